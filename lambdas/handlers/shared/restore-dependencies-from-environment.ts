// Adds what the restore steps need to the backup steps' dependencies: approval tokens, presigned URLs,
// the node agent's script, and the approvers' topic.
import { appendFile, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { S3Client } from "@aws-sdk/client-s3";
import { PublishCommand, SNSClient } from "@aws-sdk/client-sns";
import { AssumeRoleCommand, STSClient } from "@aws-sdk/client-sts";
import type { BackupDependencies } from "../../core/backup/backup-dependencies.js";
import { ApprovalTokens } from "../../core/catalogue/approval-tokens.js";
import { chainedSessionSeconds, sessionReuseSeconds } from "../../core/restore/agent-url-lifetimes.js";
import type { RestoreDependencies } from "../../core/restore/restore-dependencies.js";
import { createDynamoDbClient } from "../../core/store/aws-clients.js";
import { presignS3Url, type SigningCredentials } from "../../core/store/presign.js";
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
  const signingCredentials = environment.PRESIGN_ROLE_ARN
    ? presignRoleSession(environment.PRESIGN_ROLE_ARN, new STSClient({}))
    : clientCredentials(backup.s3);
  return {
    ...backup,
    approvals: new ApprovalTokens({ client: dynamo, tableName: environment.CATALOGUE_TABLE }),
    presign: async (request) =>
      presignS3Url({
        bucket: backup.bucket,
        key: request.key,
        method: request.method,
        expiresInSeconds: request.expiresInSeconds,
        region: await backup.s3.config.region(),
        credentials: await signingCredentials(request.expiresInSeconds),
        ...(request.versionId ? { versionId: request.versionId } : {}),
        ...(environment.S3_ENDPOINT ? { endpoint: environment.S3_ENDPOINT, forcePathStyle: true } : {}),
      }),
    operatorCliFlags: environment.OPERATOR_CLI_FLAGS ? ` ${environment.OPERATOR_CLI_FLAGS.trim()}` : "",
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

/** Signing credentials for a URL that must work for `lifetimeSeconds`. */
type CredentialSource = (lifetimeSeconds: number) => Promise<SigningCredentials>;

/** Locally (s3rver) and in tests: the S3 client's own identity. */
function clientCredentials(client: S3Client): CredentialSource {
  return async () => client.config.credentials;
}

/**
 * A presigned URL stops working when the session that signed it expires, whatever its X-Amz-Expires;
 * a Lambda function's own session may end sooner than the restore, so URLs are signed with a session
 * of PRESIGN_ROLE_ARN. That is role chaining, which STS caps at 1 h: the session is asked for the hour,
 * and the URLs roll instead of outliving the restore (agent-url-lifetimes.ts). A session is kept per cold
 * start and reused while it outlives the URL it signs; a URL as long as a session itself is signed by a
 * session at most `sessionReuseSeconds` old, so that the URLs of one plan write share a session and a
 * restore assumes the role about once per phase.
 */
export function presignRoleSession(roleArn: string, sts: STSClient): CredentialSource {
  let session: Promise<SigningCredentials & { expiration: Date }> | undefined;
  const assume = async () => {
    const reply = await sts.send(
      new AssumeRoleCommand({
        RoleArn: roleArn,
        RoleSessionName: `etcd-backup-presign-${Date.now()}`,
        DurationSeconds: chainedSessionSeconds,
      }),
    );
    const issued = reply.Credentials;
    if (!issued?.AccessKeyId || !issued.SecretAccessKey || !issued.Expiration) {
      throw new Error(`sts:AssumeRole on ${roleArn} returned no credentials`);
    }
    return {
      accessKeyId: issued.AccessKeyId,
      secretAccessKey: issued.SecretAccessKey,
      ...(issued.SessionToken ? { sessionToken: issued.SessionToken } : {}),
      expiration: issued.Expiration,
    };
  };
  return async (lifetimeSeconds) => {
    if (lifetimeSeconds > chainedSessionSeconds) {
      throw new Error(
        `a presigned URL cannot live ${lifetimeSeconds} s: the role-chained session that signs it lasts at most ${chainedSessionSeconds} s`,
      );
    }
    const neededSeconds = Math.min(lifetimeSeconds, chainedSessionSeconds - sessionReuseSeconds);
    let current = session ? await session.catch(() => undefined) : undefined;
    if (!current || current.expiration.getTime() < Date.now() + neededSeconds * 1000) {
      const started = assume();
      session = started;
      started.catch(() => {
        if (session === started) session = undefined;
      });
      current = await started;
    }
    return current;
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
