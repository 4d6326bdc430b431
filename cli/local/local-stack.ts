// Everything the two state machines need, on this machine: a real etcd of 1 or 3 members run as static
// pods by the kubelet stand-in, s3rver, dynalite with the catalogue table, and a targets file, wired to
// the real handlers through the same environment variables the Lambda functions get.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ApprovalTokens } from "../../lambdas/core/catalogue/approval-tokens.js";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "./local-dynamodb.js";
import { type LocalS3, startLocalS3 } from "./local-s3.js";
import {
  apiServerManifestName,
  controllerManagerManifestName,
  etcdManifestName,
  type StaticPodEtcd,
  schedulerManifestName,
  startStaticPodEtcd,
} from "./static-pod-etcd.js";
import { makeTempDir } from "./temp-dir.js";

export const localCluster = "local";

export interface LocalStack {
  etcd: StaticPodEtcd;
  s3: LocalS3;
  dynamo: LocalDynamoDb;
  catalogue: CatalogueRepository;
  /** Pending restore approvals; locally the answers are recorded here. */
  approvals: ApprovalTokens;
  tableName: string;
  prefix: string;
  workDir: string;
  /** Messages the handlers published to SNS topics (approval requests). */
  readNotifications(): Promise<Array<{ topicArn: string; subject: string; message: string }>>;
  stop(): Promise<void>;
}

export async function startLocalStack(options: { members: 1 | 3 }): Promise<LocalStack> {
  const work = await makeTempDir("local-stack");
  const stopping: Array<() => Promise<void>> = [() => work.remove()];
  const stop = async () => {
    for (const step of stopping.reverse()) await step().catch(() => undefined);
  };
  try {
    const [etcd, s3, dynamo] = await Promise.all([
      startStaticPodEtcd(options),
      startLocalS3(),
      startLocalDynamoDb(),
    ]);
    stopping.push(
      () => dynamo.stop(),
      () => s3.stop(),
      () => etcd.stop(),
    );
    const tableName = "etcd-backup-catalogue";
    const prefix = "etcd-backup";
    const dynamoClient = createDynamoDbClient({ endpoint: dynamo.endpoint });
    stopping.push(async () => dynamoClient.destroy());
    await createCatalogueTable(dynamoClient, tableName);
    const targetsFile = join(work.path, "targets.json");
    await writeFile(targetsFile, JSON.stringify(localTargets(etcd, prefix), null, 2));
    applyLocalHandlerEnvironment({
      tableName,
      bucket: s3.bucket,
      prefix,
      targetsFile,
      s3,
      dynamo,
      workDir: work.path,
    });
    return {
      etcd,
      s3,
      dynamo,
      catalogue: new CatalogueRepository({ client: dynamoClient, tableName }),
      approvals: new ApprovalTokens({ client: dynamoClient, tableName }),
      tableName,
      prefix,
      workDir: work.path,
      readNotifications: async () =>
        (await readFile(join(work.path, "notifications.jsonl"), "utf8").catch(() => ""))
          .split("\n")
          .filter(Boolean)
          .map((line) => JSON.parse(line)),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Points the real handlers at the local stand-ins through the variables the Lambda functions get. */
export function applyLocalHandlerEnvironment(local: {
  tableName: string;
  bucket: string;
  prefix: string;
  targetsFile: string;
  s3: { endpoint: string };
  dynamo: { endpoint: string };
  workDir: string;
}): void {
  Object.assign(process.env, {
    CATALOGUE_TABLE: local.tableName,
    SNAPSHOT_BUCKET: local.bucket,
    SNAPSHOT_PREFIX: local.prefix,
    TARGETS_FILE: local.targetsFile,
    S3_ENDPOINT: local.s3.endpoint,
    DYNAMODB_ENDPOINT: local.dynamo.endpoint,
    STAGING_DIR: local.workDir,
    APPROVERS_TOPIC_ARN: "arn:aws:sns:local:000000000000:etcd-backup-approvers",
    LOCAL_NOTIFICATIONS_FILE: join(local.workDir, "notifications.jsonl"),
    POWERTOOLS_LOG_LEVEL: "SILENT",
    POWERTOOLS_METRICS_DISABLED: "true",
    POWERTOOLS_TRACE_ENABLED: "false",
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  });
}

/** The local cluster as a target: reached directly, restored through local agents with etcdctl 3.4. */
function localTargets(etcd: StaticPodEtcd, prefix: string) {
  return {
    prefix,
    targets: [
      {
        name: localCluster,
        schedule: "rate(1 hour)",
        access: { kind: "direct" },
        etcd: { endpoints: etcd.nodes.map((node) => node.clientUrl) },
        restore: {
          executor: "local",
          restoreTool: "etcdctl",
          etcdManifest: etcdManifestName,
          apiServerManifest: apiServerManifestName,
          // Each node's stand-in kube-apiserver answers /readyz on a port of its own.
          restartManifests: [schedulerManifestName, controllerManagerManifestName],
          pollSeconds: 1,
          phaseTimeoutSeconds: 120,
          approvalTimeoutSeconds: 3600,
          members: etcd.nodes.map((node) => ({
            name: node.memberName,
            instanceId: node.name,
            dataDir: node.dataDir,
            manifestDir: node.manifestDir,
            clientUrl: node.clientUrl,
            peerUrl: node.peerUrl,
            apiServerReadyUrl: node.apiServerReadyUrl,
          })),
        },
      },
    ],
  };
}
