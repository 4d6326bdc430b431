// The freshness check of targets whose backups are more than a week apart: the real handler, against
// the catalogue in dynalite, publishes the age of the newest verified snapshot as a CloudWatch metric
// (an EMF line, as Lambda's log pipeline reads it), and nothing at all for a cluster without one, which
// the alarm counts as breaching.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lambdaContext } from "../../cli/local/local-state-machine.js";
import type { SnapshotAgeReport } from "../../lambdas/core/backup/snapshot-age-step.js";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "../support/dynamodb-server.js";
import { makeTempDir } from "../support/temp-dir.js";

const day = 86_400;
let dynamo: LocalDynamoDb;
let work: { path: string; remove: () => Promise<void> };
let catalogue: CatalogueRepository;
let handler: (event: unknown, context: ReturnType<typeof lambdaContext>) => Promise<SnapshotAgeReport>;

beforeAll(async () => {
  [dynamo, work] = await Promise.all([startLocalDynamoDb(), makeTempDir("snapshot-age")]);
  const client = createDynamoDbClient({ endpoint: dynamo.endpoint });
  await createCatalogueTable(client, "catalogue");
  catalogue = new CatalogueRepository({ client, tableName: "catalogue" });
  const targetsFile = join(work.path, "targets.json");
  await writeFile(targetsFile, JSON.stringify({ targets: [] }));
  Object.assign(process.env, {
    CATALOGUE_TABLE: "catalogue",
    SNAPSHOT_BUCKET: "unused",
    TARGETS_FILE: targetsFile,
    DYNAMODB_ENDPOINT: dynamo.endpoint,
    POWERTOOLS_LOG_LEVEL: "INFO",
    POWERTOOLS_TRACE_ENABLED: "false",
    POWERTOOLS_METRICS_NAMESPACE: "EtcdBackup",
    AWS_REGION: "us-east-1",
  });
  // Metrics are read from the environment at import: import after setting it.
  ({ handler } = await import("../../lambdas/handlers/report-snapshot-age.js"));
});

afterAll(async () => {
  await dynamo?.stop();
  await work?.remove();
});

/** Catalogues a snapshot started `ageSeconds` ago, verified unless `status` says otherwise. */
async function snapshotStarted(cluster: string, snapshotId: string, ageSeconds: number, verify = true) {
  const startedAt = new Date(Date.now() - ageSeconds * 1000);
  await catalogue.recordStarted({
    cluster,
    snapshotId,
    bucket: "backups",
    key: `etcd-backup/${cluster}/${snapshotId}.db`,
    sourceMember: "member-1",
    etcdVersion: "3.4.23",
    startedAt,
    executionArn: `arn:execution:${snapshotId}`,
    tags: ["scheduled"],
  });
  await catalogue.recordUploaded({
    cluster,
    snapshotId,
    versionId: "v1",
    bytes: 1024,
    sha256: `sha-${snapshotId}`,
    completedAt: startedAt,
    durationMs: 1000,
  });
  if (!verify) return;
  await catalogue.recordVerified({
    cluster,
    snapshotId,
    sha256: `sha-${snapshotId}`,
    revision: 10,
    totalKey: 5,
    liveKeyCount: 4,
    verifiedAt: startedAt,
  });
}

/** Runs the handler for `cluster`, returning its report and the EMF metric documents it printed. */
async function checkAge(cluster: string) {
  const printed: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  // Held back from the test's output: the log lines and EMF documents are what is checked.
  process.stdout.write = ((chunk: string | Uint8Array) => {
    printed.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  try {
    const report = await handler(
      { input: { cluster } },
      lambdaContext("arn:aws:lambda:us-east-1:1:function:age"),
    );
    const documents = printed
      .flatMap((chunk) => chunk.split("\n"))
      .filter((line) => line.includes('"_aws"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const ages = documents.filter((document) => "NewestVerifiedSnapshotAge" in document);
    return { report, ages };
  } finally {
    process.stdout.write = write;
  }
}

describe("report-snapshot-age", () => {
  it("publishes the age of the newest verified snapshot, per cluster, in seconds", async () => {
    await snapshotStarted("weekly", "20261101T030000Z-aaaaaa", 23 * day);
    await snapshotStarted("weekly", "20261117T030000Z-bbbbbb", 9 * day);
    // Newer, but never verified: it proves nothing and must not make the cluster look fresh.
    await snapshotStarted("weekly", "20261124T030000Z-cccccc", 1 * day, false);

    const { report, ages } = await checkAge("weekly");

    expect(report.newestVerified?.snapshotId).toBe("20261117T030000Z-bbbbbb");
    const age = report.newestVerified?.ageSeconds as number;
    expect(age).toBeGreaterThanOrEqual(9 * day);
    expect(age).toBeLessThan(9 * day + 60);
    expect(ages).toHaveLength(1);
    const [document] = ages as [Record<string, unknown>];
    expect(document).toMatchObject({
      NewestVerifiedSnapshotAge: age,
      Cluster: "weekly",
      service: "etcd-backup",
    });
    const [directive] = (document._aws as { CloudWatchMetrics: Record<string, unknown>[] }).CloudWatchMetrics;
    expect(directive).toMatchObject({
      Namespace: "EtcdBackup",
      Metrics: expect.arrayContaining([{ Name: "NewestVerifiedSnapshotAge", Unit: "Seconds" }]),
    });
    expect(directive?.Dimensions).toEqual([expect.arrayContaining(["service", "Cluster"])]);
  });

  it("publishes no age for a cluster without a verified snapshot, so that the alarm breaches", async () => {
    await snapshotStarted("never-verified", "20261124T030000Z-dddddd", 2 * day, false);

    const { report, ages } = await checkAge("never-verified");

    expect(report).toEqual({ cluster: "never-verified" });
    expect(ages).toEqual([]);
  });

  it("rejects an event without a cluster with the named input error", async () => {
    await expect(handler({}, lambdaContext("arn:aws:lambda:us-east-1:1:function:age"))).rejects.toMatchObject(
      {
        name: "InvalidInputError",
      },
    );
  });
});
