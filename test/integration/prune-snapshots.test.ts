// The prune step against real s3rver and dynalite: real objects, real catalogue rows, real multipart
// uploads left open. s3rver keeps no versions, so this is the unversioned bucket; the versioned and
// Object Lock cases are covered with a mocked S3 in test/unit/prune-snapshots.test.ts.
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BackupDependencies, silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { pruneSnapshots } from "../../lambdas/core/backup/prune-snapshots-step.js";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { ClusterLeases } from "../../lambdas/core/catalogue/cluster-lease.js";
import { SnapshotStatus } from "../../lambdas/core/catalogue/snapshot-record.js";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import { preRestoreTag } from "../../lambdas/core/retention/retention-policy.js";
import { newSnapshotId, snapshotObjectKey } from "../../lambdas/core/snapshot/snapshot-naming.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "../support/dynamodb-server.js";
import { type LocalS3, startLocalS3 } from "../support/s3-server.js";

const prefix = "etcd-backup";
const tableName = "etcd-backup-catalogue";
const now = new Date("2026-03-10T12:00:00Z");
const targets = parseTargetsFile({
  prefix,
  targets: ["prod", "staging"].map((name) => ({
    name,
    schedule: "rate(1 hour)",
    retention: { hourly: 2, daily: 2, weekly: 0, monthly: 0, failedGraceHours: 1, preRestoreDays: 1 },
    etcd: { endpoints: ["https://10.0.0.1:2379"] },
  })),
});

let s3: LocalS3;
let dynamo: LocalDynamoDb;
let dynamoClient: DynamoDBClient;
let catalogue: CatalogueRepository;
let snapshotCounter = 0;

beforeAll(async () => {
  [s3, dynamo] = await Promise.all([startLocalS3(), startLocalDynamoDb()]);
  dynamoClient = new DynamoDBClient({
    endpoint: dynamo.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  await createCatalogueTable(dynamoClient, tableName);
  catalogue = new CatalogueRepository({ client: dynamoClient, tableName });
});

afterAll(async () => {
  dynamoClient?.destroy();
  await Promise.all([s3?.stop(), dynamo?.stop()]);
});

function dependencies(metrics: Array<[string, number]> = []): BackupDependencies {
  return {
    s3: s3.client,
    catalogue,
    leases: new ClusterLeases({ client: dynamoClient, tableName }),
    bucket: s3.bucket,
    prefix,
    loadTargets: async () => targets,
    loadEtcdTls: async () => undefined,
    now: () => now,
    reporter: { ...silentReporter, metric: (name, _unit, value) => metrics.push([name, value]) },
  };
}

interface Catalogued {
  snapshotId: string;
  key: string;
}

/** Starts a row as the snapshot step does; optionally stores its object or opens a multipart upload. */
async function started(
  cluster: string,
  at: string,
  options: { object?: boolean; openUpload?: boolean; tags?: string[] } = {},
): Promise<Catalogued> {
  const startedAt = new Date(at);
  snapshotCounter += 1;
  const snapshotId = newSnapshotId(startedAt, Buffer.from([0, 0, snapshotCounter]));
  const key = snapshotObjectKey(prefix, cluster, snapshotId);
  await catalogue.recordStarted({
    cluster,
    snapshotId,
    bucket: s3.bucket,
    key,
    sourceMember: "http://127.0.0.1:2379",
    startedAt,
    executionArn: `arn:execution:${snapshotId}`,
    tags: options.tags,
  });
  if (options.object) {
    await s3.client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: Buffer.from(`snapshot ${snapshotId}`) }),
    );
  }
  if (options.openUpload) {
    const { UploadId } = await s3.client.send(
      new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }),
    );
    await s3.client.send(
      new UploadPartCommand({
        Bucket: s3.bucket,
        Key: key,
        UploadId,
        PartNumber: 1,
        Body: Buffer.alloc(1024, 7),
      }),
    );
  }
  return { snapshotId, key };
}

async function uploaded(cluster: string, at: string, options: { tags?: string[] } = {}): Promise<Catalogued> {
  const snapshot = await started(cluster, at, { object: true, ...options });
  const completedAt = new Date(new Date(at).getTime() + 60_000);
  await catalogue.recordUploaded({
    cluster,
    snapshotId: snapshot.snapshotId,
    bytes: 20,
    sha256: `sha256-${snapshot.snapshotId}`,
    completedAt,
    durationMs: 60_000,
  });
  return snapshot;
}

async function verified(cluster: string, at: string, options: { tags?: string[] } = {}): Promise<Catalogued> {
  const snapshot = await uploaded(cluster, at, options);
  await catalogue.recordVerified({
    cluster,
    snapshotId: snapshot.snapshotId,
    revision: 42,
    totalKey: 10,
    liveKeyCount: 8,
    verifiedAt: new Date(new Date(at).getTime() + 120_000),
  });
  return snapshot;
}

async function failed(cluster: string, at: string, failedAt: string): Promise<Catalogued> {
  const snapshot = await started(cluster, at, { openUpload: true });
  await catalogue.recordFailed({
    cluster,
    snapshotId: snapshot.snapshotId,
    errorName: "SnapshotStreamInterruptedError",
    message: "the member went away",
    failedAt: new Date(failedAt),
  });
  return snapshot;
}

async function statusOf(cluster: string, snapshot: Catalogued) {
  return (await catalogue.getSnapshot(cluster, snapshot.snapshotId))?.status;
}

describe("pruneSnapshots against s3rver and dynalite", () => {
  it("deletes expired objects, then their rows; keeps the rest; aborts a failed run's open upload", async () => {
    const cluster = "prod";
    const newest = await verified(cluster, "2026-03-10T11:00:00Z");
    const previousHour = await verified(cluster, "2026-03-10T10:00:00Z");
    const sameDay = await verified(cluster, "2026-03-10T09:00:00Z");
    const yesterdayLast = await verified(cluster, "2026-03-09T23:00:00Z");
    const yesterdayEarlier = await verified(cluster, "2026-03-09T22:00:00Z");
    const preRestoreRecent = await verified(cluster, "2026-03-10T06:00:00Z", { tags: [preRestoreTag] });
    const preRestoreExpired = await verified(cluster, "2026-03-08T12:00:00Z", { tags: [preRestoreTag] });
    const failedLongAgo = await failed(cluster, "2026-03-10T08:00:00Z", "2026-03-10T08:05:00Z");
    const failedRecently = await failed(cluster, "2026-03-10T11:30:00Z", "2026-03-10T11:31:00Z");
    const abandonedInProgress = await started(cluster, "2026-03-10T05:00:00Z", { openUpload: true });
    const abandonedUploaded = await uploaded(cluster, "2026-03-10T04:00:00Z");
    const alreadyDeleted = await verified(cluster, "2026-03-01T00:00:00Z");
    await catalogue.recordDeleted({
      cluster,
      snapshotId: alreadyDeleted.snapshotId,
      deletedAt: new Date("2026-03-02T00:00:00Z"),
    });
    const otherCluster = await verified("staging", "2026-01-01T00:00:00Z");
    const otherClusterNewest = await verified("staging", "2026-01-02T00:00:00Z");

    const dryRun = await pruneSnapshots(dependencies(), { cluster }, { dryRun: true });
    expect(dryRun.delete).toHaveLength(6);
    expect(await statusOf(cluster, sameDay)).toBe(SnapshotStatus.Verified);
    expect(await s3.listKeys(`${prefix}/${cluster}/`)).toContain(sameDay.key);

    const metrics: Array<[string, number]> = [];
    const summary = await pruneSnapshots(dependencies(metrics), { cluster });

    expect(summary.retained).toEqual([]);
    expect(summary.kept).toBe(5);
    expect(Object.fromEntries(summary.deleted.map((entry) => [entry.snapshotId, entry.reason]))).toEqual({
      [sameDay.snapshotId]: "outside-tiers",
      [yesterdayEarlier.snapshotId]: "outside-tiers",
      [preRestoreExpired.snapshotId]: "pre-restore-expired",
      [failedLongAgo.snapshotId]: "failed",
      [abandonedInProgress.snapshotId]: "abandoned",
      [abandonedUploaded.snapshotId]: "abandoned",
    });
    expect(metrics).toContainEqual(["SnapshotsPruned", 6]);

    // Objects: only the kept snapshots' remain, and the other cluster's are untouched.
    expect((await s3.listKeys()).sort()).toEqual(
      [
        newest,
        previousHour,
        yesterdayLast,
        preRestoreRecent,
        alreadyDeleted,
        otherCluster,
        otherClusterNewest,
      ]
        .map((snapshot) => snapshot.key)
        .sort(),
    );
    // alreadyDeleted's object was put by this test's set-up and left: a DELETED row is never looked at again.

    for (const snapshot of [newest, previousHour, yesterdayLast, preRestoreRecent]) {
      expect(await statusOf(cluster, snapshot)).toBe(SnapshotStatus.Verified);
    }
    expect(await statusOf(cluster, failedRecently)).toBe(SnapshotStatus.Failed);
    for (const snapshot of [
      sameDay,
      yesterdayEarlier,
      preRestoreExpired,
      failedLongAgo,
      abandonedInProgress,
      abandonedUploaded,
    ]) {
      const row = await catalogue.getSnapshot(cluster, snapshot.snapshotId);
      expect(row?.status).toBe(SnapshotStatus.Deleted);
      expect(row?.deletedAt).toBe(now.toISOString());
    }
    expect((await catalogue.getSnapshot(cluster, abandonedInProgress.snapshotId))?.failure?.errorName).toBe(
      "AbandonedRun",
    );
    expect((await catalogue.getSnapshot(cluster, alreadyDeleted.snapshotId))?.deletedAt).toBe(
      "2026-03-02T00:00:00.000Z",
    );
    expect(await statusOf("staging", otherCluster)).toBe(SnapshotStatus.Verified);

    // The failed run's upload is aborted; the one still within its grace period is left alone.
    expect(await s3.listOpenMultipartUploads()).toEqual([failedRecently.key]);
    // The newest verified snapshot is still the one the catalogue finds.
    expect((await catalogue.findLatestVerified(cluster))?.snapshotId).toBe(newest.snapshotId);

    // A second prune (a retried step) finds nothing more to do.
    const again = await pruneSnapshots(dependencies(), { cluster });
    expect(again).toEqual({ deleted: [], retained: [], kept: 5 });
  });
});
