// The real handlers find the local stand-ins through the same environment variables the Lambda functions
// get from the CDK stack; this is what the local stack sets, in its own process or, through the session
// file of `etcd-backup local up`, in another.
import { join } from "node:path";

export interface LocalHandlerEnvironment {
  tableName: string;
  bucket: string;
  prefix: string;
  targetsFile: string;
  s3: { endpoint: string };
  dynamo: { endpoint: string };
  /** Staging files and the published notifications. */
  workDir: string;
}

/** Points the real handlers at the local stand-ins through the variables the Lambda functions get. */
export function applyLocalHandlerEnvironment(local: LocalHandlerEnvironment): void {
  Object.assign(process.env, {
    CATALOGUE_TABLE: local.tableName,
    SNAPSHOT_BUCKET: local.bucket,
    SNAPSHOT_PREFIX: local.prefix,
    TARGETS_FILE: local.targetsFile,
    S3_ENDPOINT: local.s3.endpoint,
    DYNAMODB_ENDPOINT: local.dynamo.endpoint,
    STAGING_DIR: local.workDir,
    APPROVERS_TOPIC_ARN: "arn:aws:sns:local:000000000000:etcd-backup-approvers",
    LOCAL_NOTIFICATIONS_FILE: localNotificationsFile(local.workDir),
    OPERATOR_CLI_FLAGS: "--local",
    POWERTOOLS_LOG_LEVEL: "SILENT",
    POWERTOOLS_METRICS_DISABLED: "true",
    POWERTOOLS_TRACE_ENABLED: "false",
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  });
}

/** Where the handlers' SNS publishes land locally, one JSON object per line. */
export function localNotificationsFile(workDir: string): string {
  return join(workDir, "notifications.jsonl");
}
