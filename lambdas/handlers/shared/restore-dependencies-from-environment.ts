// Adds what the restore steps need to the backup steps' dependencies: approval tokens, presigned URLs,
// the node agent's script, and the approvers' topic.
import { appendFile, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { PublishCommand, SNSClient } from "@aws-sdk/client-sns";
import type { BackupDependencies } from "../../core/backup/backup-dependencies.js";
import { ApprovalTokens } from "../../core/catalogue/approval-tokens.js";
import type { RestoreDependencies } from "../../core/restore/restore-dependencies.js";
import { createDynamoDbClient } from "../../core/store/aws-clients.js";
import { presignWithClient } from "../../core/store/presign.js";
import type { HandlerEnvironment } from "./environment.js";

/** Beside the bundled handler on Lambda (copied there at bundling); in the source tree otherwise. */
const defaultAgentScript = fileURLToPath(
  new URL("../../core/restore/agent/etcd-restore-agent.sh", import.meta.url),
);

export function createRestoreDependencies(
  environment: HandlerEnvironment,
  backup: BackupDependencies,
): RestoreDependencies {
  const publish = environment.LOCAL_NOTIFICATIONS_FILE
    ? appendTo(environment.LOCAL_NOTIFICATIONS_FILE)
    : publishToSns;
  const dynamo = createDynamoDbClient({ endpoint: environment.DYNAMODB_ENDPOINT });
  let script: Promise<string> | undefined;
  return {
    ...backup,
    approvals: new ApprovalTokens({ client: dynamo, tableName: environment.CATALOGUE_TABLE }),
    presign: (request) =>
      presignWithClient(backup.s3, {
        bucket: backup.bucket,
        key: request.key,
        method: request.method,
        expiresInSeconds: request.expiresInSeconds,
        ...(request.versionId ? { versionId: request.versionId } : {}),
        ...(environment.S3_ENDPOINT ? { endpoint: environment.S3_ENDPOINT, forcePathStyle: true } : {}),
      }),
    loadAgentScript: () => {
      script ??= readFile(environment.RESTORE_AGENT_SCRIPT ?? defaultAgentScript, "utf8");
      return script;
    },
    notifyApprovers: async (subject, message) => {
      if (!environment.APPROVERS_TOPIC_ARN) throw new Error("APPROVERS_TOPIC_ARN is not set");
      await publish(environment.APPROVERS_TOPIC_ARN, subject, message);
    },
  };
}

/** Local runs have no SNS: messages are appended to a file, one JSON object per line. */
function appendTo(file: string) {
  return async (topicArn: string, subject: string, message: string) => {
    await appendFile(file, `${JSON.stringify({ topicArn, subject, message })}\n`);
  };
}

let sns: SNSClient | undefined;

async function publishToSns(topicArn: string, subject: string, message: string): Promise<void> {
  sns ??= new SNSClient({});
  await sns.send(new PublishCommand({ TopicArn: topicArn, Subject: subject, Message: message }));
}
