// A real etcd, s3rver and dynalite wired to the backup handlers through the environment, as the local
// runner and the demo do: everything the backup state machine needs, on this machine.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { applyLocalHandlerEnvironment } from "../../cli/local/local-handler-environment.js";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { ClusterLeases } from "../../lambdas/core/catalogue/cluster-lease.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "./dynamodb-server.js";
import { type EtcdCluster, startEtcdCluster } from "./etcd-cluster.js";
import { type LocalS3, startLocalS3 } from "./s3-server.js";
import { makeTempDir } from "./temp-dir.js";

export interface LocalBackupStack {
  etcd: EtcdCluster;
  s3: LocalS3;
  dynamo: LocalDynamoDb;
  catalogue: CatalogueRepository;
  leases: ClusterLeases;
  tableName: string;
  prefix: string;
  stop(): Promise<void>;
}

/**
 * Targets: the real cluster as `local`, and again as `local-report` (memberHashCheck `report`),
 * `unreachable`, whose only endpoint answers nothing, and any the caller adds (written before a handler
 * runs: the handlers read the targets file once).
 */
export async function startLocalBackupStack(
  options: { members?: 1 | 3; extraTargets?: Array<Record<string, unknown>> } = {},
): Promise<LocalBackupStack> {
  const [etcd, s3, dynamo, work] = await Promise.all([
    startEtcdCluster({ members: options.members ?? 1 }),
    startLocalS3(),
    startLocalDynamoDb(),
    makeTempDir("backup-stack"),
  ]);
  const tableName = "etcd-backup-catalogue";
  const prefix = "etcd-backup";
  const client = createDynamoDbClient({ endpoint: dynamo.endpoint });
  await createCatalogueTable(client, tableName);
  const targetsFile = join(work.path, "targets.json");
  await writeFile(
    targetsFile,
    JSON.stringify({
      prefix,
      targets: [
        {
          name: "local",
          schedule: "rate(1 hour)",
          access: { kind: "direct" },
          etcd: { endpoints: etcd.endpoints },
        },
        {
          name: "local-report",
          schedule: "rate(1 hour)",
          access: { kind: "direct" },
          etcd: { endpoints: etcd.endpoints, memberHashCheck: "report" },
        },
        {
          name: "unreachable",
          schedule: "rate(1 hour)",
          access: { kind: "direct" },
          etcd: { endpoints: ["http://127.0.0.1:1"] },
        },
        ...(options.extraTargets ?? []),
      ],
    }),
  );
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
    catalogue: new CatalogueRepository({ client, tableName }),
    leases: new ClusterLeases({ client, tableName }),
    tableName,
    prefix,
    async stop() {
      client.destroy();
      await Promise.all([etcd.stop(), s3.stop(), dynamo.stop()]);
      await work.remove();
    },
  };
}
