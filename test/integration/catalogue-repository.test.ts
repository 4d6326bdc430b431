import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { ClusterLeases } from "../../lambdas/core/catalogue/cluster-lease.js";
import { type SnapshotRecord, SnapshotStatus } from "../../lambdas/core/catalogue/snapshot-record.js";
import { CatalogueConflictError, InvalidInputError } from "../../lambdas/core/errors.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "../support/dynamodb-server.js";

const tableName = "etcd-backup-catalogue";
let dynamo: LocalDynamoDb;
let client: DynamoDBClient;
let catalogue: CatalogueRepository;
/** The commands the client sent, by name, to prove how many requests an operation takes. */
const sentCommands: string[] = [];

beforeAll(async () => {
  dynamo = await startLocalDynamoDb();
  client = new DynamoDBClient({
    endpoint: dynamo.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  client.middlewareStack.add(
    (next, context) => (args) => {
      sentCommands.push(context.commandName ?? "unknown");
      return next(args);
    },
    { step: "initialize", name: "recordCommandNames" },
  );
  await createCatalogueTable(client, tableName);
  catalogue = new CatalogueRepository({ client, tableName });
});

afterAll(async () => {
  client?.destroy();
  await dynamo?.stop();
});

let clusterCounter = 0;
/** Each test works in a cluster of its own, so tests share one table without seeing each other. */
function newCluster(): string {
  clusterCounter += 1;
  return `cluster-${clusterCounter}`;
}

/** Snapshot ids as the product makes them: sortable by time, then a random suffix. */
function snapshotIdAt(minute: number): string {
  const time = new Date(Date.UTC(2026, 10, 24, 0, minute)).toISOString();
  return `${time.slice(0, 19).replaceAll("-", "").replaceAll(":", "")}Z-${(minute * 7919).toString(16).padStart(6, "0")}`;
}

const startedAt = new Date("2026-11-24T19:36:00Z");
const figures = { revision: 4242, totalKey: 120, liveKeyCount: 97 };

function sha256Of(snapshotId: string): string {
  return `sha256-of-${snapshotId}`;
}

function started(cluster: string, snapshotId: string, executionArn = `arn:execution:${snapshotId}`) {
  return catalogue.recordStarted({
    cluster,
    snapshotId,
    bucket: "backups",
    key: `etcd/${cluster}/${snapshotId}.db`,
    sourceMember: "member-1",
    etcdVersion: "3.4.23",
    startedAt,
    executionArn,
    tags: ["scheduled"],
  });
}

function uploaded(cluster: string, snapshotId: string, sha256 = sha256Of(snapshotId)) {
  return catalogue.recordUploaded({
    cluster,
    snapshotId,
    versionId: "v1",
    bytes: 1_048_576,
    sha256,
    completedAt: new Date("2026-11-24T19:36:05Z"),
    durationMs: 5000,
  });
}

function verified(cluster: string, snapshotId: string, overrides: Partial<typeof figures> = {}) {
  return catalogue.recordVerified({
    cluster,
    snapshotId,
    sha256: sha256Of(snapshotId),
    ...figures,
    ...overrides,
    verifiedAt: new Date("2026-11-24T19:36:09Z"),
  });
}

function failed(cluster: string, snapshotId: string, message = "trailer mismatch") {
  return catalogue.recordFailed({
    cluster,
    snapshotId,
    errorName: "SnapshotCorruptError",
    message,
    failedAt: new Date("2026-11-24T19:36:10Z"),
  });
}

function deleted(cluster: string, snapshotId: string) {
  return catalogue.recordDeleted({
    cluster,
    snapshotId,
    deletedAt: new Date("2026-12-24T00:00:00Z"),
    expiresAt: 1_800_000_000,
  });
}

/** Catalogues a snapshot and moves it along the legal path to `status`. */
async function rowIn(cluster: string, snapshotId: string, status: SnapshotStatus): Promise<void> {
  await started(cluster, snapshotId);
  if (status === SnapshotStatus.InProgress) return;
  if (status === SnapshotStatus.Failed) {
    await failed(cluster, snapshotId);
    return;
  }
  await uploaded(cluster, snapshotId);
  if (status === SnapshotStatus.Uploaded) return;
  await verified(cluster, snapshotId);
  if (status === SnapshotStatus.Verified) return;
  await deleted(cluster, snapshotId);
}

async function expectConflict(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(CatalogueConflictError);
  expect((error as Error).name).toBe("CatalogueConflictError");
  expect((error as Error).message).toMatch(pattern);
}

function idsOf(records: SnapshotRecord[]): string[] {
  return records.map((record) => record.snapshotId);
}

describe("catalogue table", () => {
  it("is created once; creating it again is harmless", async () => {
    await expect(createCatalogueTable(client, tableName)).resolves.toBeUndefined();
    expect(await catalogue.listSnapshots(newCluster())).toEqual({ snapshots: [] });
  });
});

describe("catalogue transitions", () => {
  it("records IN_PROGRESS → UPLOADED → VERIFIED → DELETED, each step changing the row once", async () => {
    const cluster = newCluster();
    const id = snapshotIdAt(1);

    const start = await started(cluster, id);
    expect(start.changed).toBe(true);
    expect(await catalogue.getSnapshot(cluster, id)).toEqual({
      cluster,
      snapshotId: id,
      status: "IN_PROGRESS",
      bucket: "backups",
      key: `etcd/${cluster}/${id}.db`,
      sourceMember: "member-1",
      etcdVersion: "3.4.23",
      startedAt: "2026-11-24T19:36:00.000Z",
      executionArn: `arn:execution:${id}`,
      tags: ["scheduled"],
    });

    const upload = await uploaded(cluster, id);
    expect(upload.changed).toBe(true);
    expect(upload.record).toMatchObject({
      status: "UPLOADED",
      versionId: "v1",
      bytes: 1_048_576,
      sha256: sha256Of(id),
      completedAt: "2026-11-24T19:36:05.000Z",
      durationMs: 5000,
    });

    const verify = await verified(cluster, id);
    expect(verify.changed).toBe(true);
    expect(verify.record).toMatchObject({
      status: "VERIFIED",
      ...figures,
      verifiedAt: "2026-11-24T19:36:09.000Z",
    });
    expect(verify.record).not.toHaveProperty("verifiedCluster");
    expect(verify.record).not.toHaveProperty("sk");

    const deletion = await deleted(cluster, id);
    expect(deletion.changed).toBe(true);
    expect(deletion.record).toMatchObject({
      status: "DELETED",
      deletedAt: "2026-12-24T00:00:00.000Z",
      expiresAt: 1_800_000_000,
      ...figures,
    });
    expect(await catalogue.getSnapshot(cluster, id)).toEqual(deletion.record);
  });

  it("records which retention tiers keep a VERIFIED snapshot, leaving a row deleted meanwhile as it is", async () => {
    await rowIn("tiers", "s-1", SnapshotStatus.Verified);
    const labelled = await catalogue.recordKeptBy({
      cluster: "tiers",
      snapshotId: "s-1",
      keptBy: ["hourly", "daily"],
    });
    expect(labelled.changed).toBe(true);
    expect((await catalogue.getSnapshot("tiers", "s-1"))?.retentionTier).toBe("hourly,daily");
    expect((await catalogue.findLatestVerified("tiers"))?.retentionTier).toBe("hourly,daily");
    const again = await catalogue.recordKeptBy({
      cluster: "tiers",
      snapshotId: "s-1",
      keptBy: ["hourly", "daily"],
    });
    expect(again.changed).toBe(false);
    await deleted("tiers", "s-1");
    const late = await catalogue.recordKeptBy({ cluster: "tiers", snapshotId: "s-1", keptBy: ["daily"] });
    expect(late).toMatchObject({ changed: false, record: { status: SnapshotStatus.Deleted } });
    // Deleted, it is kept by nothing: list and show do not say otherwise.
    expect(late.record).not.toHaveProperty("retentionTier");
    await expect(
      catalogue.recordKeptBy({ cluster: "tiers", snapshotId: "never-catalogued", keptBy: ["daily"] }),
    ).rejects.toBeInstanceOf(CatalogueConflictError);
  });

  it("holds a VERIFIED snapshot for a restore, a later hold replacing an earlier one, and nothing else", async () => {
    await rowIn("held", "s-1", SnapshotStatus.Verified);
    const first = await catalogue.holdForRestore({
      cluster: "held",
      snapshotId: "s-1",
      execution: "restore-1",
      until: new Date("2026-12-01T00:00:00Z"),
    });
    expect(first.changed).toBe(true);
    expect(first.record).toMatchObject({
      restoreHeldBy: "restore-1",
      restoreHeldUntil: "2026-12-01T00:00:00.000Z",
    });
    // An earlier end does not shorten the hold another restore needs.
    const earlier = await catalogue.holdForRestore({
      cluster: "held",
      snapshotId: "s-1",
      execution: "restore-2",
      until: new Date("2026-11-30T00:00:00Z"),
    });
    expect(earlier).toMatchObject({ changed: false, record: { restoreHeldBy: "restore-1" } });
    const later = await catalogue.holdForRestore({
      cluster: "held",
      snapshotId: "s-1",
      execution: "restore-3",
      until: new Date("2026-12-02T00:00:00Z"),
    });
    expect(later.record).toMatchObject({
      restoreHeldBy: "restore-3",
      restoreHeldUntil: "2026-12-02T00:00:00.000Z",
    });
    // A snapshot retention deleted first cannot be held: the restore is refused before anyone is asked.
    await deleted("held", "s-1");
    await expect(
      catalogue.holdForRestore({
        cluster: "held",
        snapshotId: "s-1",
        execution: "restore-4",
        until: new Date("2026-12-03T00:00:00Z"),
      }),
    ).rejects.toThrow(/cannot record VERIFIED for snapshot s-1 of cluster held: it is DELETED/);
  });

  it("records FAILED from IN_PROGRESS and from UPLOADED, and DELETED from FAILED", async () => {
    const cluster = newCluster();
    await started(cluster, snapshotIdAt(1));
    const fromInProgress = await failed(cluster, snapshotIdAt(1), "etcd went away");
    expect(fromInProgress.record).toMatchObject({
      status: "FAILED",
      failure: { errorName: "SnapshotCorruptError", message: "etcd went away" },
      failedAt: "2026-11-24T19:36:10.000Z",
    });

    await rowIn(cluster, snapshotIdAt(2), SnapshotStatus.Uploaded);
    expect((await failed(cluster, snapshotIdAt(2))).record.status).toBe("FAILED");
    expect((await deleted(cluster, snapshotIdAt(2))).record.status).toBe("DELETED");
  });

  it("treats a retried step as a no-op that leaves the row as the first call wrote it", async () => {
    const cluster = newCluster();
    const id = snapshotIdAt(1);
    await started(cluster, id);
    const again = await started(cluster, id);
    expect(again.changed).toBe(false);
    expect(again.record.status).toBe("IN_PROGRESS");

    await uploaded(cluster, id);
    expect((await uploaded(cluster, id)).changed).toBe(false);
    // A late retry of an earlier step is still a no-op once the row has moved on.
    expect((await started(cluster, id)).record.status).toBe("UPLOADED");

    await verified(cluster, id);
    const verifiedAgain = await verified(cluster, id);
    expect(verifiedAgain).toMatchObject({ changed: false, record: { status: "VERIFIED" } });

    const other = snapshotIdAt(2);
    await started(cluster, other);
    await failed(cluster, other, "first failure");
    const failedAgain = await failed(cluster, other, "second failure");
    expect(failedAgain.changed).toBe(false);
    expect(failedAgain.record.failure?.message).toBe("first failure");

    await deleted(cluster, other);
    expect((await deleted(cluster, other)).changed).toBe(false);
  });

  it("refuses to catalogue the same snapshot id for a different execution", async () => {
    const cluster = newCluster();
    const id = snapshotIdAt(1);
    await started(cluster, id, "arn:execution:first");
    await expectConflict(
      started(cluster, id, "arn:execution:second"),
      /already catalogued \(IN_PROGRESS, execution arn:execution:first/,
    );
    expect((await catalogue.getSnapshot(cluster, id))?.executionArn).toBe("arn:execution:first");
  });

  it("refuses a repeated upload or verification that carries different figures", async () => {
    const cluster = newCluster();
    const id = snapshotIdAt(1);
    await started(cluster, id);
    await uploaded(cluster, id);
    await expectConflict(
      uploaded(cluster, id, "another-sha"),
      /it is UPLOADED, with sha256 sha256-of-.*not another-sha/,
    );

    await expectConflict(
      catalogue.recordVerified({
        cluster,
        snapshotId: id,
        sha256: "bytes-that-were-never-uploaded",
        ...figures,
        verifiedAt: startedAt,
      }),
      /cannot record VERIFIED .*: it is UPLOADED, the uploaded sha256 is sha256-of-/,
    );
    expect((await catalogue.getSnapshot(cluster, id))?.status).toBe("UPLOADED");

    await verified(cluster, id);
    await expectConflict(verified(cluster, id, { revision: 1 }), /it is VERIFIED, verified as revision 4242/);
    await expectConflict(
      catalogue.recordVerified({
        cluster,
        snapshotId: id,
        sha256: "other-bytes",
        ...figures,
        verifiedAt: startedAt,
      }),
      /it is VERIFIED, .*sha256 sha256-of-/,
    );
  });

  const illegal: {
    operation: string;
    from: SnapshotStatus;
    call: (cluster: string, id: string) => Promise<unknown>;
  }[] = [
    ...(["VERIFIED", "FAILED", "DELETED"] as const).map((from) => ({
      operation: "UPLOADED",
      from,
      call: uploaded,
    })),
    ...(["IN_PROGRESS", "FAILED", "DELETED"] as const).map((from) => ({
      operation: "VERIFIED",
      from,
      call: (cluster: string, id: string) => verified(cluster, id),
    })),
    ...(["VERIFIED", "DELETED"] as const).map((from) => ({
      operation: "FAILED",
      from,
      call: (cluster: string, id: string) => failed(cluster, id),
    })),
    ...(["IN_PROGRESS", "UPLOADED"] as const).map((from) => ({ operation: "DELETED", from, call: deleted })),
  ];

  it.each(illegal)(
    "refuses to record $operation on a $from row, naming its status",
    async ({ from, call, operation }) => {
      const cluster = newCluster();
      const id = snapshotIdAt(1);
      await rowIn(cluster, id, from);
      const before = await catalogue.getSnapshot(cluster, id);
      await expectConflict(call(cluster, id), new RegExp(`cannot record ${operation} .*: it is ${from}`));
      expect(await catalogue.getSnapshot(cluster, id)).toEqual(before);
    },
  );

  it.each([
    ["UPLOADED", uploaded],
    ["VERIFIED", (cluster: string, id: string) => verified(cluster, id)],
    ["FAILED", (cluster: string, id: string) => failed(cluster, id)],
    ["DELETED", deleted],
  ] as const)("refuses to record %s for a snapshot that was never catalogued", async (_operation, call) => {
    const cluster = newCluster();
    await expectConflict(call(cluster, snapshotIdAt(1)), /it is not catalogued/);
    expect(await catalogue.getSnapshot(cluster, snapshotIdAt(1))).toBeUndefined();
  });
});

describe("latest verified snapshot", () => {
  it("is the newest VERIFIED row, found with one Query, ignoring newer rows in other states", async () => {
    const cluster = newCluster();
    await rowIn(cluster, snapshotIdAt(1), SnapshotStatus.Verified);
    await rowIn(cluster, snapshotIdAt(2), SnapshotStatus.Verified);
    await rowIn(cluster, snapshotIdAt(3), SnapshotStatus.Failed);
    await rowIn(cluster, snapshotIdAt(4), SnapshotStatus.Uploaded);
    await rowIn(cluster, snapshotIdAt(5), SnapshotStatus.InProgress);
    await rowIn(cluster, snapshotIdAt(0), SnapshotStatus.Deleted);

    sentCommands.length = 0;
    const latest = await catalogue.findLatestVerified(cluster);
    expect(sentCommands).toEqual(["QueryCommand"]);
    expect(latest).toMatchObject({ snapshotId: snapshotIdAt(2), status: "VERIFIED", ...figures });
    expect(latest).not.toHaveProperty("verifiedCluster");
  });

  it("moves to the next older verified snapshot when the newest is deleted, and is absent when none is left", async () => {
    const cluster = newCluster();
    await rowIn(cluster, snapshotIdAt(1), SnapshotStatus.Verified);
    await rowIn(cluster, snapshotIdAt(2), SnapshotStatus.Verified);
    expect((await catalogue.findLatestVerified(cluster))?.snapshotId).toBe(snapshotIdAt(2));

    await deleted(cluster, snapshotIdAt(2));
    expect((await catalogue.findLatestVerified(cluster))?.snapshotId).toBe(snapshotIdAt(1));

    await deleted(cluster, snapshotIdAt(1));
    expect(await catalogue.findLatestVerified(cluster)).toBeUndefined();

    await rowIn(cluster, snapshotIdAt(3), SnapshotStatus.Verified);
    expect((await catalogue.findLatestVerified(cluster))?.snapshotId).toBe(snapshotIdAt(3));
  });

  it("belongs to its own cluster: a newer verified snapshot of another cluster does not count", async () => {
    const mine = newCluster();
    const theirs = newCluster();
    await rowIn(mine, snapshotIdAt(1), SnapshotStatus.Verified);
    await rowIn(theirs, snapshotIdAt(2), SnapshotStatus.Verified);
    expect((await catalogue.findLatestVerified(mine))?.cluster).toBe(mine);
    expect((await catalogue.findLatestVerified(mine))?.snapshotId).toBe(snapshotIdAt(1));
    expect(await catalogue.findLatestVerified(newCluster())).toBeUndefined();
  });
});

describe("listing snapshots", () => {
  it("pages through a cluster's snapshots newest first, the last page without a token", async () => {
    const cluster = newCluster();
    for (let minute = 1; minute <= 7; minute++) await started(cluster, snapshotIdAt(minute));

    const first = await catalogue.listSnapshots(cluster, { limit: 3 });
    expect(idsOf(first.snapshots)).toEqual([snapshotIdAt(7), snapshotIdAt(6), snapshotIdAt(5)]);
    expect(first.nextToken).toBeDefined();
    const second = await catalogue.listSnapshots(cluster, { limit: 3, nextToken: first.nextToken });
    expect(idsOf(second.snapshots)).toEqual([snapshotIdAt(4), snapshotIdAt(3), snapshotIdAt(2)]);
    const third = await catalogue.listSnapshots(cluster, { limit: 3, nextToken: second.nextToken });
    expect(idsOf(third.snapshots)).toEqual([snapshotIdAt(1)]);
    expect(third.nextToken).toBeUndefined();
  });

  it("ends without an empty page when the rows fill the last page exactly", async () => {
    const cluster = newCluster();
    for (let minute = 1; minute <= 4; minute++) await started(cluster, snapshotIdAt(minute));
    const first = await catalogue.listSnapshots(cluster, { limit: 2 });
    const second = await catalogue.listSnapshots(cluster, { limit: 2, nextToken: first.nextToken });
    expect(idsOf(second.snapshots)).toEqual([snapshotIdAt(2), snapshotIdAt(1)]);
    expect(second.nextToken).toBeUndefined();
  });

  it("filters by status across pages without skipping or repeating rows", async () => {
    const cluster = newCluster();
    const statuses: SnapshotStatus[] = [
      "VERIFIED",
      "FAILED",
      "VERIFIED",
      "UPLOADED",
      "VERIFIED",
      "FAILED",
      "VERIFIED",
    ];
    for (const [index, status] of statuses.entries()) await rowIn(cluster, snapshotIdAt(index + 1), status);

    const first = await catalogue.listSnapshots(cluster, { status: "VERIFIED", limit: 3 });
    expect(idsOf(first.snapshots)).toEqual([snapshotIdAt(7), snapshotIdAt(5), snapshotIdAt(3)]);
    const second = await catalogue.listSnapshots(cluster, {
      status: "VERIFIED",
      limit: 3,
      nextToken: first.nextToken,
    });
    expect(idsOf(second.snapshots)).toEqual([snapshotIdAt(1)]);
    expect(second.nextToken).toBeUndefined();

    const failedOrUploaded = await catalogue.listSnapshots(cluster, { status: ["FAILED", "UPLOADED"] });
    expect(idsOf(failedOrUploaded.snapshots)).toEqual([snapshotIdAt(6), snapshotIdAt(4), snapshotIdAt(2)]);
    expect(failedOrUploaded.snapshots.map((record) => record.status)).toEqual([
      "FAILED",
      "UPLOADED",
      "FAILED",
    ]);
  });

  it("finds rare matches behind many rows of other statuses", async () => {
    const cluster = newCluster();
    await rowIn(cluster, snapshotIdAt(1), SnapshotStatus.Verified);
    await rowIn(cluster, snapshotIdAt(2), SnapshotStatus.Verified);
    await Promise.all(Array.from({ length: 450 }, (_, index) => started(cluster, snapshotIdAt(index + 3))));

    const page = await catalogue.listSnapshots(cluster, { status: "VERIFIED", limit: 5 });
    expect(idsOf(page.snapshots)).toEqual([snapshotIdAt(2), snapshotIdAt(1)]);
    expect(page.nextToken).toBeUndefined();
  });

  it("lists only snapshot rows of the cluster asked for, not its lease nor other clusters' rows", async () => {
    const mine = newCluster();
    const theirs = newCluster();
    await started(mine, snapshotIdAt(1));
    await started(theirs, snapshotIdAt(2));
    await new ClusterLeases({ client, tableName }).acquireLease({
      cluster: mine,
      owner: "arn:execution:x",
      ttlSeconds: 60,
      now: startedAt,
    });
    const page = await catalogue.listSnapshots(mine);
    expect(page.snapshots).toHaveLength(1);
    expect(page.snapshots[0]).toMatchObject({ cluster: mine, snapshotId: snapshotIdAt(1) });
    expect(page.nextToken).toBeUndefined();
  });

  it("rejects a token from another cluster's listing, a forged token and a bad limit", async () => {
    const mine = newCluster();
    const theirs = newCluster();
    for (let minute = 1; minute <= 3; minute++) await started(theirs, snapshotIdAt(minute));
    const { nextToken } = await catalogue.listSnapshots(theirs, { limit: 1 });
    await expect(catalogue.listSnapshots(mine, { nextToken })).rejects.toThrow(InvalidInputError);
    await expect(catalogue.listSnapshots(mine, { nextToken: "not-a-token" })).rejects.toThrow(
      InvalidInputError,
    );
    await expect(catalogue.listSnapshots(mine, { limit: 0 })).rejects.toThrow(/limit must be an integer/);
  });
});
