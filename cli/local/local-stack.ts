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
import {
  applyLocalHandlerEnvironment,
  type LocalHandlerEnvironment,
  localNotificationsFile,
} from "./local-handler-environment.js";
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
  /** What the handlers read to find the stand-ins (applied to this process already). */
  environment: LocalHandlerEnvironment;
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
    const environment: LocalHandlerEnvironment = {
      tableName,
      bucket: s3.bucket,
      prefix,
      targetsFile,
      s3: { endpoint: s3.endpoint },
      dynamo: { endpoint: dynamo.endpoint },
      workDir: work.path,
    };
    applyLocalHandlerEnvironment(environment);
    return {
      environment,
      etcd,
      s3,
      dynamo,
      catalogue: new CatalogueRepository({ client: dynamoClient, tableName }),
      approvals: new ApprovalTokens({ client: dynamoClient, tableName }),
      tableName,
      prefix,
      workDir: work.path,
      readNotifications: async () =>
        (await readFile(localNotificationsFile(work.path), "utf8").catch(() => ""))
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

/**
 * The local cluster as a target: reached directly, restored through local agents with the restore tool of
 * this machine's etcd release (etcdutl from 3.5 on, etcdctl on 3.4), named by its path.
 */
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
          restoreTool: etcd.installed.restoreTool,
          toolPath: etcd.installed.restoreToolPath,
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
