import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectLegalHoldCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { type BackupDependencies, silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { pruneSnapshots } from "../../lambdas/core/backup/prune-snapshots-step.js";
import type {
  CatalogueRepository,
  ListSnapshotsOptions,
  RecordDeletedInput,
  RecordFailedInput,
} from "../../lambdas/core/catalogue/catalogue-repository.js";
import { type SnapshotRecord, SnapshotStatus } from "../../lambdas/core/catalogue/snapshot-record.js";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import {
  CatalogueUnavailableError,
  ErrorNames,
  StorageAccessDeniedError,
  StorageUnavailableError,
} from "../../lambdas/core/errors.js";
import {
  abandonedRunErrorName,
  applyRetentionPlan,
  pruneFailureError,
} from "../../lambdas/core/retention/prune-snapshots.js";
import type { RetentionPlan } from "../../lambdas/core/retention/retention-policy.js";

const bucket = "backups";
const now = new Date("2026-11-24T12:00:00Z");

const s3 = new S3Client({
  region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
});
const s3Mock = mockClient(s3);
afterAll(() => {
  s3Mock.restore();
  s3.destroy();
});

/** Every S3 request and catalogue write, in the order they happened. */
let events: string[];
let catalogue: FakeCatalogue;

beforeEach(() => {
  events = [];
  s3Mock.reset();
  s3Mock.callsFake((input) => {
    throw new Error(`unexpected S3 request ${JSON.stringify(input)}`);
  });
  const recorded = (name: string) => () => {
    events.push(`s3:${name}`);
    return {};
  };
  s3Mock.on(DeleteObjectCommand).callsFake(recorded("DeleteObject"));
  s3Mock.on(HeadObjectCommand).callsFake(recorded("HeadObject"));
  s3Mock.on(ListMultipartUploadsCommand).callsFake(recorded("ListMultipartUploads"));
  s3Mock.on(AbortMultipartUploadCommand).callsFake(recorded("AbortMultipartUpload"));
});

/** The catalogue's transitions, in memory: enough to see what the prune did to each row. */
class FakeCatalogue {
  readonly rows = new Map<string, SnapshotRecord>();
  /** How many rows `listSnapshots` returns per page, to prove the step reads every page. */
  pageSize = 1000;
  readonly listCalls: ListSnapshotsOptions[] = [];

  constructor(records: SnapshotRecord[]) {
    for (const record of records) this.rows.set(record.snapshotId, { ...record });
  }

  status(snapshotId: string): string | undefined {
    return this.rows.get(snapshotId)?.status;
  }

  async recordFailed(input: RecordFailedInput) {
    events.push("catalogue:recordFailed");
    return this.move(input.snapshotId, SnapshotStatus.Failed, {
      failure: { errorName: input.errorName, message: input.message },
      failedAt: input.failedAt.toISOString(),
    });
  }

  async recordKeptBy(input: { snapshotId: string; keptBy: readonly string[] }) {
    events.push(`catalogue:recordKeptBy:${input.snapshotId}`);
    const row = this.rows.get(input.snapshotId);
    if (row === undefined) throw new Error(`no row ${input.snapshotId}`);
    return this.move(input.snapshotId, row.status, { retentionTier: input.keptBy.join(",") });
  }

  async recordDeleted(input: RecordDeletedInput) {
    events.push("catalogue:recordDeleted");
    return this.move(input.snapshotId, SnapshotStatus.Deleted, {
      deletedAt: input.deletedAt.toISOString(),
      expiresAt: input.expiresAt,
    });
  }

  async listSnapshots(_cluster: string, options: ListSnapshotsOptions = {}) {
    this.listCalls.push(options);
    const statuses = [options.status ?? []].flat();
    const all = [...this.rows.values()]
      .filter((row) => statuses.length === 0 || statuses.includes(row.status))
      .sort((a, b) => b.snapshotId.localeCompare(a.snapshotId));
    const start = options.nextToken === undefined ? 0 : Number(options.nextToken);
    const end = start + Math.min(this.pageSize, options.limit ?? 50);
    return {
      snapshots: all.slice(start, end).map((row) => ({ ...row })),
      ...(end < all.length ? { nextToken: String(end) } : {}),
    };
  }

  private move(snapshotId: string, status: SnapshotRecord["status"], fields: Partial<SnapshotRecord>) {
    const row = this.rows.get(snapshotId);
    if (row === undefined) throw new Error(`no row ${snapshotId}`);
    const record = { ...row, ...fields, status };
    this.rows.set(snapshotId, record);
    return { record, changed: true };
  }
}

function row(snapshotId: string, fields: Partial<SnapshotRecord> = {}): SnapshotRecord {
  return {
    cluster: "prod",
    snapshotId,
    status: SnapshotStatus.Verified,
    bucket,
    key: `etcd-backup/prod/${snapshotId}.db`,
    sourceMember: "https://10.0.0.1:2379",
    startedAt: "2026-11-01T00:00:00Z",
    tags: [],
    ...fields,
  };
}

function planToDelete(...snapshotIds: string[]): RetentionPlan {
  return {
    keep: [],
    delete: snapshotIds.map((snapshotId) => ({ snapshotId, reason: "outside-tiers" as const })),
  };
}

function s3Error(name: string, httpStatusCode: number, message: string): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: httpStatusCode >= 500 ? "server" : "client",
    $metadata: { httpStatusCode },
    message,
  });
}

async function apply(records: SnapshotRecord[], plan: RetentionPlan) {
  catalogue = new FakeCatalogue(records);
  return applyRetentionPlan({ s3, catalogue, now: () => now }, records, plan);
}

describe("applyRetentionPlan", () => {
  it("writes on each kept VERIFIED row the tiers that keep it, where they changed, after the deletions", async () => {
    const records = [
      row("v3", { retentionTier: "hourly" }),
      row("v2", { retentionTier: "hourly,daily" }),
      row("f1", { status: SnapshotStatus.Failed }),
      row("v1", { versionId: "version-of-v1" }),
    ];
    const { failures } = await apply(records, {
      keep: [
        { snapshotId: "v3", reasons: ["hourly", "newest-verified"] },
        { snapshotId: "v2", reasons: ["hourly", "daily"] },
        { snapshotId: "f1", reasons: ["failed-grace-period"] },
      ],
      delete: [{ snapshotId: "v1", reason: "outside-tiers" }],
    });
    expect(failures).toEqual([]);
    expect(events).toEqual(["s3:DeleteObject", "catalogue:recordDeleted", "catalogue:recordKeptBy:v3"]);
    expect(catalogue.rows.get("v3")?.retentionTier).toBe("hourly,newest-verified");
  });

  it("deletes the catalogued object version by its VersionId, then marks the row DELETED", async () => {
    const records = [row("v1", { versionId: "version-of-v1" })];

    const { summary, failures } = await apply(records, planToDelete("v1"));

    expect(failures).toEqual([]);
    expect(summary).toEqual({
      deleted: [{ snapshotId: "v1", reason: "outside-tiers" }],
      retained: [],
      kept: 0,
    });
    expect(s3Mock.commandCalls(DeleteObjectCommand).map((call) => call.args[0].input)).toEqual([
      { Bucket: bucket, Key: "etcd-backup/prod/v1.db", VersionId: "version-of-v1" },
    ]);
    expect(events).toEqual(["s3:DeleteObject", "catalogue:recordDeleted"]);
    expect(catalogue.status("v1")).toBe(SnapshotStatus.Deleted);
    expect(catalogue.rows.get("v1")?.expiresAt).toBe(now.getTime() / 1000 + 30 * 24 * 3600);
  });

  it("leaves the row VERIFIED when S3 fails the delete with a 500, and goes on with the others", async () => {
    const records = [row("v2", { versionId: "a" }), row("v1", { versionId: "b" })];
    s3Mock
      .on(DeleteObjectCommand, { VersionId: "a" })
      .rejects(s3Error("InternalError", 500, "We encountered an internal error. Please try again."));

    const { summary, failures } = await apply(records, planToDelete("v2", "v1"));

    expect(catalogue.status("v2")).toBe(SnapshotStatus.Verified);
    expect(catalogue.status("v1")).toBe(SnapshotStatus.Deleted);
    expect(summary.deleted.map((entry) => entry.snapshotId)).toEqual(["v1"]);
    expect(failures.map((failure) => failure.snapshotId)).toEqual(["v2"]);
    expect(failures[0]?.error).toBeInstanceOf(StorageUnavailableError);
    expect(String(failures[0]?.error)).toContain("version a");
  });

  it("keeps and reports a version Object Lock refuses to delete, without an error", async () => {
    const records = [row("locked", { versionId: "v-locked" })];
    s3Mock
      .on(DeleteObjectCommand)
      .rejects(s3Error("AccessDenied", 403, "Access Denied because object protected by object lock."));

    const { summary, failures } = await apply(records, planToDelete("locked"));

    expect(failures).toEqual([]);
    expect(summary.deleted).toEqual([]);
    expect(summary.retained).toEqual([
      { snapshotId: "locked", reason: expect.stringContaining("Object Lock") as unknown as string },
    ]);
    expect(catalogue.status("locked")).toBe(SnapshotStatus.Verified);
    expect(events).not.toContain("catalogue:recordDeleted");
  });

  it("reads the version's retention when a 403 does not name Object Lock", async () => {
    const records = [row("locked", { versionId: "v-locked" })];
    s3Mock.on(DeleteObjectCommand).rejects(s3Error("AccessDenied", 403, "Access Denied"));
    s3Mock
      .on(GetObjectRetentionCommand, { VersionId: "v-locked" })
      .resolves({ Retention: { Mode: "COMPLIANCE", RetainUntilDate: new Date("2027-01-01T00:00:00Z") } });
    s3Mock.on(GetObjectLegalHoldCommand).resolves({ LegalHold: { Status: "OFF" } });

    const { summary, failures } = await apply(records, planToDelete("locked"));

    expect(failures).toEqual([]);
    expect(summary.retained).toEqual([
      { snapshotId: "locked", reason: "Object Lock COMPLIANCE retention until 2027-01-01T00:00:00.000Z" },
    ]);
  });

  it("reports a 403 that no lock explains as a failure, the row untouched", async () => {
    const records = [row("denied", { versionId: "v" })];
    s3Mock.on(DeleteObjectCommand).rejects(s3Error("AccessDenied", 403, "Access Denied"));
    // A retention that has run out holds nothing back.
    s3Mock
      .on(GetObjectRetentionCommand)
      .resolves({ Retention: { Mode: "GOVERNANCE", RetainUntilDate: new Date("2026-01-01T00:00:00Z") } });
    s3Mock.on(GetObjectLegalHoldCommand).rejects(s3Error("AccessDenied", 403, "Access Denied"));

    const { summary, failures } = await apply(records, planToDelete("denied"));

    expect(summary.retained).toEqual([]);
    // A refusal, not an outage: the state machine does not retry it.
    expect(failures[0]?.error).toBeInstanceOf(StorageAccessDeniedError);
    expect(catalogue.status("denied")).toBe(SnapshotStatus.Verified);
  });

  it("marks the row DELETED when the version is already gone", async () => {
    const records = [row("gone", { versionId: "v" })];
    s3Mock
      .on(DeleteObjectCommand)
      .rejects(s3Error("NoSuchVersion", 404, "The specified version does not exist."));

    const { summary, failures } = await apply(records, planToDelete("gone"));

    expect(failures).toEqual([]);
    expect(summary.deleted.map((entry) => entry.snapshotId)).toEqual(["gone"]);
    expect(catalogue.status("gone")).toBe(SnapshotStatus.Deleted);
  });

  it("deletes the current version by its id when the row has none, rather than adding a delete marker", async () => {
    const records = [row("unversioned-row")];
    s3Mock.on(HeadObjectCommand).callsFake(() => {
      events.push("s3:HeadObject");
      return { VersionId: "current-version" };
    });

    await apply(records, planToDelete("unversioned-row"));

    expect(s3Mock.commandCalls(DeleteObjectCommand)[0]?.args[0].input).toEqual({
      Bucket: bucket,
      Key: "etcd-backup/prod/unversioned-row.db",
      VersionId: "current-version",
    });
    expect(events).toEqual(["s3:HeadObject", "s3:DeleteObject", "catalogue:recordDeleted"]);
  });

  it("deletes nothing in S3 for a FAILED row whose run never stored an object, and still marks it DELETED", async () => {
    const records = [row("failed", { status: SnapshotStatus.Failed })];
    s3Mock.on(HeadObjectCommand).rejects(s3Error("NotFound", 404, "Not Found"));

    const { summary, failures } = await apply(records, planToDelete("failed"));

    expect(failures).toEqual([]);
    expect(summary.deleted.map((entry) => entry.snapshotId)).toEqual(["failed"]);
    expect(s3Mock.commandCalls(DeleteObjectCommand)).toHaveLength(0);
    expect(catalogue.status("failed")).toBe(SnapshotStatus.Deleted);
  });

  it("aborts the open multipart uploads of a FAILED row's key, and only of that key", async () => {
    const key = "etcd-backup/prod/failed.db";
    const records = [row("failed", { status: SnapshotStatus.Failed })];
    s3Mock.on(ListMultipartUploadsCommand).callsFake((input: { Prefix?: string }) => {
      events.push("s3:ListMultipartUploads");
      expect(input.Prefix).toBe(key);
      return {
        Uploads: [
          { Key: key, UploadId: "u1" },
          { Key: `${key}.other`, UploadId: "u2" },
          { Key: key, UploadId: "u3" },
        ],
        IsTruncated: false,
      };
    });
    s3Mock.on(HeadObjectCommand).rejects(s3Error("NotFound", 404, "Not Found"));

    await apply(records, planToDelete("failed"));

    expect(s3Mock.commandCalls(AbortMultipartUploadCommand).map((call) => call.args[0].input)).toEqual([
      { Bucket: bucket, Key: key, UploadId: "u1" },
      { Bucket: bucket, Key: key, UploadId: "u3" },
    ]);
  });

  it("marks an abandoned IN_PROGRESS row FAILED first, as of when it started, then cleans up and deletes it", async () => {
    // A run that stopped mid-upload: no completedAt and no version; its object was never stored.
    const records = [
      row("abandoned", { status: SnapshotStatus.InProgress, startedAt: "2026-11-19T23:00:00Z" }),
    ];
    s3Mock.on(HeadObjectCommand).callsFake(() => {
      events.push("s3:HeadObject");
      throw s3Error("NotFound", 404, "Not Found");
    });

    const { summary, failures } = await apply(records, planToDelete("abandoned"));

    expect(failures).toEqual([]);
    expect(events).toEqual([
      "catalogue:recordFailed",
      "s3:ListMultipartUploads",
      "s3:HeadObject",
      "catalogue:recordDeleted",
    ]);
    expect(s3Mock.commandCalls(DeleteObjectCommand)).toHaveLength(0);
    expect(catalogue.rows.get("abandoned")).toMatchObject({
      status: SnapshotStatus.Deleted,
      failure: {
        errorName: abandonedRunErrorName,
        message: expect.stringContaining(`status ${SnapshotStatus.InProgress}`) as unknown as string,
      },
      // As of its startedAt: neither now (a retried prune would restart the grace period) nor unset.
      failedAt: "2026-11-19T23:00:00.000Z",
    });
    expect(summary.deleted).toEqual([{ snapshotId: "abandoned", reason: "outside-tiers" }]);
  });

  it("marks an abandoned UPLOADED row FAILED first, as of when it was last heard of, then cleans up and deletes it", async () => {
    const records = [
      row("abandoned", {
        status: SnapshotStatus.Uploaded,
        versionId: "v",
        completedAt: "2026-11-20T01:00:00Z",
      }),
    ];

    const { summary } = await apply(records, planToDelete("abandoned"));

    expect(events).toEqual([
      "catalogue:recordFailed",
      "s3:ListMultipartUploads",
      "s3:DeleteObject",
      "catalogue:recordDeleted",
    ]);
    expect(catalogue.rows.get("abandoned")).toMatchObject({
      status: SnapshotStatus.Deleted,
      failure: { errorName: abandonedRunErrorName },
      failedAt: "2026-11-20T01:00:00.000Z",
    });
    expect(summary.deleted).toHaveLength(1);
  });

  it("does not touch multipart uploads for a VERIFIED row", async () => {
    await apply([row("v", { versionId: "x" })], planToDelete("v"));
    expect(s3Mock.commandCalls(ListMultipartUploadsCommand)).toHaveLength(0);
  });
});

describe("pruneFailureError", () => {
  it("passes a single failure on as it is", () => {
    const error = new CatalogueUnavailableError("throttled");
    expect(pruneFailureError([{ snapshotId: "a", error }], 3)).toBe(error);
  });

  it("names several failures after the first, so that the state machine's Retry still matches", () => {
    const combined = pruneFailureError(
      [
        { snapshotId: "a", error: new StorageUnavailableError("500") },
        { snapshotId: "b", error: new CatalogueUnavailableError("throttled") },
      ],
      1,
    );
    expect(combined).toBeInstanceOf(StorageUnavailableError);
    expect(combined.message).toContain("2 snapshot(s) could not be pruned (1 were)");
    expect(combined.message).toContain("b: CatalogueUnavailableError: throttled");
  });
});

describe("pruneSnapshots step", () => {
  const targets = parseTargetsFile({
    targets: [
      {
        name: "prod",
        schedule: "rate(1 hour)",
        retention: { hourly: 2, daily: 0, weekly: 0, monthly: 0, failedGraceHours: 1, preRestoreDays: 1 },
        etcd: { endpoints: ["https://10.0.0.1:2379"] },
      },
    ],
  });
  const hourly = (hour: number) =>
    row(`20261124T${String(hour).padStart(2, "0")}0000000Z-000000`, {
      startedAt: `2026-11-24T${String(hour).padStart(2, "0")}:00:00Z`,
      versionId: `version-${hour}`,
    });

  function dependencies(rows: SnapshotRecord[]) {
    catalogue = new FakeCatalogue(rows);
    const metrics: Array<[string, number]> = [];
    const deps: BackupDependencies = {
      s3,
      catalogue: catalogue as unknown as CatalogueRepository,
      leases: {} as BackupDependencies["leases"],
      bucket,
      prefix: "etcd-backup",
      loadTargets: async () => targets,
      loadEtcdTls: async () => undefined,
      now: () => now,
      reporter: { ...silentReporter, metric: (name, _unit, value) => metrics.push([name, value]) },
    };
    return { deps, metrics };
  }

  it("reads every page of the cluster's live rows, plans with the target's policy, prunes and counts", async () => {
    const rows = [hourly(11), hourly(10), hourly(9), hourly(8), hourly(7)];
    const { deps, metrics } = dependencies(rows);
    catalogue.pageSize = 2;

    const summary = await pruneSnapshots(deps, { cluster: "prod" });

    expect(catalogue.listCalls).toHaveLength(3);
    expect(catalogue.listCalls[0]?.status).not.toContain(SnapshotStatus.Deleted);
    expect(summary).toEqual({
      deleted: [9, 8, 7].map((hour) => ({ snapshotId: hourly(hour).snapshotId, reason: "outside-tiers" })),
      retained: [],
      kept: 2,
    });
    expect(metrics).toContainEqual(["SnapshotsPruned", 3]);
    expect(catalogue.status(hourly(11).snapshotId)).toBe(SnapshotStatus.Verified);
    expect(catalogue.status(hourly(7).snapshotId)).toBe(SnapshotStatus.Deleted);
  });

  it("in a dry run returns the plan and neither deletes nor writes anything", async () => {
    const { deps } = dependencies([hourly(11), hourly(10), hourly(9)]);

    const result = await pruneSnapshots(deps, { cluster: "prod" }, { dryRun: true });

    expect(result).toEqual({
      dryRun: true,
      keep: [
        { snapshotId: hourly(11).snapshotId, reasons: ["newest-verified", "hourly"] },
        { snapshotId: hourly(10).snapshotId, reasons: ["hourly"] },
      ],
      delete: [{ snapshotId: hourly(9).snapshotId, reason: "outside-tiers" }],
    });
    expect(s3Mock.calls()).toHaveLength(0);
    expect(events).toEqual([]);
  });

  it("reports what it pruned before throwing for what it could not, under a retryable name", async () => {
    const { deps, metrics } = dependencies([hourly(11), hourly(10), hourly(9), hourly(8)]);
    s3Mock
      .on(DeleteObjectCommand, { VersionId: "version-9" })
      .rejects(s3Error("SlowDown", 503, "Please reduce your request rate."));

    await expect(pruneSnapshots(deps, { cluster: "prod" })).rejects.toMatchObject({
      name: ErrorNames.StorageUnavailable,
    });
    expect(metrics).toContainEqual(["SnapshotsPruned", 1]);
    expect(catalogue.status(hourly(9).snapshotId)).toBe(SnapshotStatus.Verified);
    expect(catalogue.status(hourly(8).snapshotId)).toBe(SnapshotStatus.Deleted);
  });
});
