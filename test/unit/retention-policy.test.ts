import { describe, expect, it } from "vitest";
import { type SnapshotRecord, SnapshotStatus } from "../../lambdas/core/catalogue/snapshot-record.js";
import type { RetentionPolicy } from "../../lambdas/core/config/target-config.js";
import {
  type DeleteReason,
  type KeepReason,
  planRetention,
  preRestoreTag,
  type RetentionTier,
  retentionPeriodKey,
} from "../../lambdas/core/retention/retention-policy.js";

const noTiers: RetentionPolicy = {
  hourly: 0,
  daily: 0,
  weekly: 0,
  monthly: 0,
  failedGraceHours: 48,
  preRestoreDays: 90,
  onDemandDays: 30,
};

interface Row {
  /** The snapshot id is the label: ties are broken by it (the greater is the newer). */
  id: string;
  at: string;
  status?: SnapshotRecord["status"];
  tags?: string[];
  completedAt?: string;
  failedAt?: string;
  restoreHeldUntil?: string;
}

function record(row: Row): SnapshotRecord {
  return {
    cluster: "prod",
    snapshotId: row.id,
    status: row.status ?? SnapshotStatus.Verified,
    bucket: "backups",
    key: `etcd-backup/prod/${row.id}.db`,
    sourceMember: "https://10.0.0.1:2379",
    startedAt: row.at,
    tags: row.tags ?? [],
    ...(row.completedAt === undefined ? {} : { completedAt: row.completedAt }),
    ...(row.failedAt === undefined ? {} : { failedAt: row.failedAt }),
    ...(row.restoreHeldUntil === undefined
      ? {}
      : {
          restoreHeldBy: "arn:aws:states:eu-west-1:123456789012:execution:restore:r1",
          restoreHeldUntil: row.restoreHeldUntil,
        }),
  };
}

interface PlanCase {
  name: string;
  policy: Partial<RetentionPolicy>;
  rows: Row[];
  now: string;
  keep: Record<string, KeepReason[]>;
  delete: Record<string, DeleteReason>;
}

const planCases: PlanCase[] = [
  {
    name: "hourly keeps the newest snapshot of each of the last N hours that have one",
    policy: { hourly: 2 },
    now: "2026-11-24T12:10:00Z",
    rows: [
      { id: "h12b", at: "2026-11-24T12:05:00Z" },
      { id: "h12a", at: "2026-11-24T12:00:00Z" },
      { id: "h11b", at: "2026-11-24T11:59:59.999Z" },
      { id: "h11a", at: "2026-11-24T11:00:00Z" },
      { id: "h10", at: "2026-11-24T10:30:00Z" },
    ],
    keep: { h12b: ["newest-verified", "hourly"], h11b: ["hourly"] },
    delete: { h12a: "outside-tiers", h11a: "outside-tiers", h10: "outside-tiers" },
  },
  {
    name: "a gap does not empty a tier: periods are counted among those with a snapshot, not on the calendar",
    policy: { hourly: 3 },
    now: "2026-11-24T12:00:00Z",
    rows: [
      { id: "nov20", at: "2026-11-20T08:00:00Z" },
      { id: "nov17", at: "2026-11-17T08:00:00Z" },
      { id: "nov10", at: "2026-11-10T08:00:00Z" },
      { id: "nov01", at: "2026-11-01T08:00:00Z" },
    ],
    keep: { nov20: ["newest-verified", "hourly"], nov17: ["hourly"], nov10: ["hourly"] },
    delete: { nov01: "outside-tiers" },
  },
  {
    name: "daily buckets split at UTC midnight across a month boundary",
    policy: { daily: 2 },
    now: "2026-03-01T12:00:00Z",
    rows: [
      { id: "mar01-late", at: "2026-03-01T10:00:00Z" },
      { id: "mar01-early", at: "2026-03-01T00:00:00Z" },
      { id: "feb28-last", at: "2026-02-28T23:59:59Z" },
      { id: "feb28-first", at: "2026-02-28T00:00:00Z" },
    ],
    keep: { "mar01-late": ["newest-verified", "daily"], "feb28-last": ["daily"] },
    delete: { "mar01-early": "outside-tiers", "feb28-first": "outside-tiers" },
  },
  {
    name: "the leap day is a day of its own and February's last",
    policy: { daily: 3, monthly: 2 },
    now: "2024-03-01T06:00:00Z",
    rows: [
      { id: "mar01", at: "2024-03-01T00:10:00Z" },
      { id: "feb29-late", at: "2024-02-29T23:00:00Z" },
      { id: "feb29-early", at: "2024-02-29T01:00:00Z" },
      { id: "feb28", at: "2024-02-28T12:00:00Z" },
      { id: "feb27", at: "2024-02-27T12:00:00Z" },
    ],
    keep: {
      mar01: ["newest-verified", "daily", "monthly"],
      "feb29-late": ["daily", "monthly"],
      feb28: ["daily"],
    },
    delete: { "feb29-early": "outside-tiers", feb27: "outside-tiers" },
  },
  {
    name: "monthly buckets split at the new year",
    policy: { monthly: 2 },
    now: "2026-01-01T01:00:00Z",
    rows: [
      { id: "jan01", at: "2026-01-01T00:00:00Z" },
      { id: "dec31", at: "2025-12-31T23:59:59.999Z" },
      { id: "dec01", at: "2025-12-01T00:00:00Z" },
      { id: "nov30", at: "2025-11-30T23:00:00Z" },
    ],
    keep: { jan01: ["newest-verified", "monthly"], dec31: ["monthly"] },
    delete: { dec01: "outside-tiers", nov30: "outside-tiers" },
  },
  {
    name: "ISO week 53 of 2020 runs into January 2021",
    policy: { weekly: 2 },
    now: "2021-01-04T12:00:00Z",
    rows: [
      { id: "2021-w01-mon", at: "2021-01-04T00:00:00Z" },
      { id: "2020-w53-sun", at: "2021-01-03T23:59:59Z" },
      { id: "2020-w53-thu", at: "2020-12-31T12:00:00Z" },
      { id: "2020-w53-mon", at: "2020-12-28T00:00:00Z" },
      { id: "2020-w52-sun", at: "2020-12-27T23:00:00Z" },
    ],
    keep: { "2021-w01-mon": ["newest-verified", "weekly"], "2020-w53-sun": ["weekly"] },
    delete: {
      "2020-w53-thu": "outside-tiers",
      "2020-w53-mon": "outside-tiers",
      "2020-w52-sun": "outside-tiers",
    },
  },
  {
    name: "the last days of December 2024 are week 1 of 2025",
    policy: { weekly: 2 },
    now: "2025-01-06T00:00:00Z",
    rows: [
      { id: "2025-w01-sun", at: "2025-01-05T18:00:00Z" },
      { id: "2025-w01-mon", at: "2024-12-30T06:00:00Z" },
      { id: "2024-w52-sun", at: "2024-12-29T18:00:00Z" },
      { id: "2024-w52-mon", at: "2024-12-23T06:00:00Z" },
    ],
    keep: { "2025-w01-sun": ["newest-verified", "weekly"], "2024-w52-sun": ["weekly"] },
    delete: { "2025-w01-mon": "outside-tiers", "2024-w52-mon": "outside-tiers" },
  },
  {
    name: "periods are UTC: a time written with an offset falls in its UTC day",
    policy: { daily: 2 },
    now: "2026-03-11T12:00:00Z",
    rows: [
      // 2026-03-10T23:30Z: the 10th in UTC, though the 11th where it was written.
      { id: "utc-10th-late", at: "2026-03-11T00:30:00+01:00" },
      { id: "utc-10th-noon", at: "2026-03-10T12:00:00Z" },
      // 2026-03-09T22:00Z: the 9th in UTC, though the 10th where it was written.
      { id: "utc-9th", at: "2026-03-10T08:00:00+10:00" },
    ],
    keep: { "utc-10th-late": ["newest-verified", "daily"], "utc-9th": ["daily"] },
    delete: { "utc-10th-noon": "outside-tiers" },
  },
  {
    name: "with every count zero only the newest verified snapshot is kept",
    policy: {},
    now: "2026-11-24T12:00:00Z",
    rows: [
      { id: "c", at: "2026-11-24T11:00:00Z" },
      { id: "b", at: "2026-10-24T11:00:00Z" },
      { id: "a", at: "2025-11-24T11:00:00Z" },
    ],
    keep: { c: ["newest-verified"] },
    delete: { b: "outside-tiers", a: "outside-tiers" },
  },
  {
    name: "snapshots at the same instant are ordered by snapshot id, whatever the input order",
    policy: { hourly: 1, daily: 1 },
    now: "2026-11-24T12:00:00Z",
    rows: [
      { id: "20261124T110000000Z-00000a", at: "2026-11-24T11:00:00Z" },
      { id: "20261124T110000000Z-00000f", at: "2026-11-24T11:00:00Z" },
      { id: "20261124T110000000Z-000003", at: "2026-11-24T11:00:00Z" },
    ],
    keep: { "20261124T110000000Z-00000f": ["newest-verified", "hourly", "daily"] },
    delete: { "20261124T110000000Z-00000a": "outside-tiers", "20261124T110000000Z-000003": "outside-tiers" },
  },
  {
    name: "tiers are independent: one snapshot may serve all four",
    policy: { hourly: 2, daily: 2, weekly: 2, monthly: 2 },
    now: "2026-11-24T12:00:00Z",
    rows: [
      { id: "now", at: "2026-11-24T11:00:00Z" },
      { id: "hour-before", at: "2026-11-24T10:00:00Z" },
      { id: "yesterday", at: "2026-11-23T10:00:00Z" },
      { id: "last-week", at: "2026-11-16T10:00:00Z" },
      { id: "last-month", at: "2026-10-16T10:00:00Z" },
      { id: "older", at: "2026-09-16T10:00:00Z" },
    ],
    keep: {
      now: ["newest-verified", "hourly", "daily", "weekly", "monthly"],
      "hour-before": ["hourly"],
      yesterday: ["daily"],
      "last-week": ["weekly"],
      "last-month": ["monthly"],
    },
    delete: { older: "outside-tiers" },
  },
  {
    name: "pre-restore snapshots are kept for preRestoreDays from startedAt and take no tier's place",
    policy: { hourly: 1, preRestoreDays: 30 },
    now: "2026-11-30T12:00:00Z",
    rows: [
      { id: "pre-new", at: "2026-11-30T11:30:00Z", tags: [preRestoreTag] },
      { id: "scheduled", at: "2026-11-30T11:00:00Z" },
      { id: "pre-29d", at: "2026-11-01T12:00:01Z", tags: [preRestoreTag] },
      { id: "pre-30d", at: "2026-10-31T12:00:00Z", tags: [preRestoreTag] },
      { id: "pre-60d", at: "2026-10-01T12:00:00Z", tags: [preRestoreTag, "manual"] },
    ],
    keep: {
      "pre-new": ["newest-verified", "pre-restore"],
      scheduled: ["hourly"],
      "pre-29d": ["pre-restore"],
    },
    delete: { "pre-30d": "pre-restore-expired", "pre-60d": "pre-restore-expired" },
  },
  {
    name: "a snapshot a restore chose is kept until its hold ends, then retention applies again",
    policy: { hourly: 1, preRestoreDays: 1 },
    now: "2026-11-30T12:00:00Z",
    rows: [
      { id: "newest", at: "2026-11-30T11:00:00Z" },
      // Chosen yesterday; its approval may still be pending.
      { id: "chosen", at: "2026-11-29T09:00:00Z", restoreHeldUntil: "2026-12-01T13:00:00Z" },
      {
        id: "chosen-safety",
        at: "2026-11-20T09:00:00Z",
        tags: [preRestoreTag],
        restoreHeldUntil: "2026-11-30T12:00:01Z",
      },
      { id: "hold-ended", at: "2026-11-28T09:00:00Z", restoreHeldUntil: "2026-11-30T12:00:00Z" },
    ],
    keep: {
      newest: ["newest-verified", "hourly"],
      chosen: ["restore-pending"],
      "chosen-safety": ["restore-pending"],
    },
    delete: { "hold-ended": "outside-tiers" },
  },
  {
    name: "on-demand snapshots are kept for onDemandDays and take no tier's place: the next hourly run keeps them",
    policy: { hourly: 2, onDemandDays: 30 },
    now: "2026-11-30T12:10:00Z",
    rows: [
      { id: "scheduled-12", at: "2026-11-30T12:00:00Z" },
      // Taken before an upgrade at 11:40, within the hour the 11:00 run serves.
      { id: "before-upgrade", at: "2026-11-30T11:40:00Z", tags: ["on-demand", "pre-upgrade"] },
      { id: "scheduled-11", at: "2026-11-30T11:00:00Z" },
      { id: "on-demand-29d", at: "2026-11-01T12:10:01Z", tags: ["on-demand"] },
      { id: "on-demand-30d", at: "2026-10-31T12:10:00Z", tags: ["on-demand"] },
    ],
    keep: {
      "scheduled-12": ["newest-verified", "hourly"],
      "before-upgrade": ["on-demand"],
      "scheduled-11": ["hourly"],
      "on-demand-29d": ["on-demand"],
    },
    delete: { "on-demand-30d": "on-demand-expired" },
  },
  {
    name: "an expired pre-restore snapshot that is the newest verified one is still kept",
    policy: { hourly: 24, preRestoreDays: 1 },
    now: "2026-11-30T12:00:00Z",
    rows: [
      { id: "pre", at: "2026-11-20T00:00:00Z", tags: [preRestoreTag] },
      {
        id: "failed",
        at: "2026-11-19T00:00:00Z",
        status: SnapshotStatus.Failed,
        failedAt: "2026-11-19T00:01:00Z",
      },
    ],
    keep: { pre: ["newest-verified"] },
    delete: { failed: "failed" },
  },
  {
    name: "FAILED rows go after failedGraceHours from when they failed, and never count as verified",
    policy: { hourly: 1, failedGraceHours: 48 },
    now: "2026-11-24T12:00:00Z",
    rows: [
      {
        id: "f-new",
        at: "2026-11-24T11:50:00Z",
        status: SnapshotStatus.Failed,
        failedAt: "2026-11-24T11:55:00Z",
      },
      { id: "v", at: "2026-11-24T11:00:00Z" },
      {
        id: "f-47h",
        at: "2026-11-22T12:00:00Z",
        status: SnapshotStatus.Failed,
        failedAt: "2026-11-22T13:00:00Z",
      },
      {
        id: "f-48h",
        at: "2026-11-22T11:00:00Z",
        status: SnapshotStatus.Failed,
        failedAt: "2026-11-22T12:00:00Z",
      },
      { id: "f-no-time", at: "2026-11-01T00:00:00Z", status: SnapshotStatus.Failed },
    ],
    keep: {
      "f-new": ["failed-grace-period"],
      v: ["newest-verified", "hourly"],
      "f-47h": ["failed-grace-period"],
    },
    delete: { "f-48h": "failed", "f-no-time": "failed" },
  },
  {
    name: "IN_PROGRESS and UPLOADED rows are abandoned after the grace period, never before a run's lease",
    policy: { failedGraceHours: 1 },
    now: "2026-11-24T12:00:00Z",
    rows: [
      { id: "running-62m", at: "2026-11-24T10:58:00Z", status: SnapshotStatus.InProgress },
      {
        id: "uploaded-recently",
        at: "2026-11-24T08:00:00Z",
        status: SnapshotStatus.Uploaded,
        completedAt: "2026-11-24T11:30:00Z",
      },
      { id: "dead-66m", at: "2026-11-24T10:54:00Z", status: SnapshotStatus.InProgress },
      {
        id: "dead-uploaded",
        at: "2026-11-23T08:00:00Z",
        status: SnapshotStatus.Uploaded,
        completedAt: "2026-11-23T08:10:00Z",
      },
    ],
    keep: { "running-62m": ["in-progress"], "uploaded-recently": ["in-progress"] },
    delete: { "dead-66m": "abandoned", "dead-uploaded": "abandoned" },
  },
  {
    name: "DELETED rows are in neither list and take no tier's place",
    policy: { hourly: 1, daily: 1 },
    now: "2026-11-24T12:00:00Z",
    rows: [
      { id: "gone", at: "2026-11-24T11:30:00Z", status: SnapshotStatus.Deleted },
      { id: "v-today", at: "2026-11-24T11:00:00Z" },
      { id: "gone-yesterday", at: "2026-11-23T11:00:00Z", status: SnapshotStatus.Deleted },
      { id: "v-yesterday", at: "2026-11-23T10:00:00Z" },
    ],
    keep: { "v-today": ["newest-verified", "hourly", "daily"] },
    delete: { "v-yesterday": "outside-tiers" },
  },
  {
    name: "a row whose time cannot be read is kept rather than deleted on a guess",
    policy: {},
    now: "2026-11-24T12:00:00Z",
    rows: [
      { id: "v", at: "2026-11-24T11:00:00Z" },
      { id: "garbled", at: "yesterday-ish" },
    ],
    keep: { v: ["newest-verified"], garbled: ["unreadable-time"] },
    delete: {},
  },
];

describe("planRetention", () => {
  it.each(planCases)("$name", (testCase) => {
    const records = testCase.rows.map(record);
    const plan = planRetention(records, { ...noTiers, ...testCase.policy }, new Date(testCase.now));

    expect(Object.fromEntries(plan.keep.map((entry) => [entry.snapshotId, entry.reasons]))).toEqual(
      testCase.keep,
    );
    expect(Object.fromEntries(plan.delete.map((entry) => [entry.snapshotId, entry.reason]))).toEqual(
      testCase.delete,
    );
  });

  it.each(planCases)("gives the same plan for shuffled input: $name", (testCase) => {
    const policy = { ...noTiers, ...testCase.policy };
    const now = new Date(testCase.now);
    const inOrder = planRetention(testCase.rows.map(record), policy, now);
    const reversed = planRetention([...testCase.rows].reverse().map(record), policy, now);
    expect(sortedPlan(reversed)).toEqual(sortedPlan(inOrder));
  });

  it.each(planCases)("places every row that is not DELETED in exactly one list: $name", (testCase) => {
    const plan = planRetention(
      testCase.rows.map(record),
      { ...noTiers, ...testCase.policy },
      new Date(testCase.now),
    );
    const listed = [...plan.keep, ...plan.delete].map((entry) => entry.snapshotId).sort();
    const live = testCase.rows.filter((row) => row.status !== SnapshotStatus.Deleted).map((row) => row.id);
    expect(listed).toEqual(live.sort());
  });

  it("lists both plans newest first", () => {
    const plan = planRetention(
      [
        record({ id: "old", at: "2026-01-01T00:00:00Z" }),
        record({ id: "new", at: "2026-03-01T00:00:00Z" }),
        record({ id: "mid", at: "2026-02-01T00:00:00Z" }),
        record({ id: "older", at: "2025-12-01T00:00:00Z" }),
      ],
      { ...noTiers, monthly: 2 },
      new Date("2026-03-02T00:00:00Z"),
    );
    expect(plan.keep.map((entry) => entry.snapshotId)).toEqual(["new", "mid"]);
    expect(plan.delete.map((entry) => entry.snapshotId)).toEqual(["old", "older"]);
  });

  it("keeps nothing and deletes nothing for an empty catalogue", () => {
    expect(planRetention([], { ...noTiers, hourly: 24 }, new Date())).toEqual({ keep: [], delete: [] });
  });
});

describe("retentionPeriodKey", () => {
  const cases: Array<[RetentionTier, string, string]> = [
    ["hourly", "2026-11-24T19:59:59.999Z", "2026-11-24T19"],
    ["hourly", "2026-11-24T20:00:00+01:00", "2026-11-24T19"],
    ["daily", "2024-02-29T23:59:59Z", "2024-02-29"],
    ["monthly", "2025-12-31T23:59:59Z", "2025-12"],
    ["weekly", "2020-12-31T00:00:00Z", "2020-W53"],
    ["weekly", "2021-01-03T23:59:59Z", "2020-W53"],
    ["weekly", "2021-01-04T00:00:00Z", "2021-W01"],
    ["weekly", "2024-12-30T00:00:00Z", "2025-W01"],
    ["weekly", "2026-12-31T12:00:00Z", "2026-W53"],
    ["weekly", "2027-01-03T12:00:00Z", "2026-W53"],
    ["weekly", "2027-01-04T12:00:00Z", "2027-W01"],
    ["weekly", "2026-01-01T00:00:00Z", "2026-W01"],
    ["weekly", "2023-01-01T12:00:00Z", "2022-W52"],
    ["weekly", "2026-11-24T12:00:00Z", "2026-W48"],
  ];
  it.each(cases)("puts a %s snapshot at %s in %s", (tier, time, key) => {
    expect(retentionPeriodKey(tier, new Date(time))).toBe(key);
  });
});

function sortedPlan(plan: ReturnType<typeof planRetention>) {
  return {
    keep: [...plan.keep].sort((a, b) => a.snapshotId.localeCompare(b.snapshotId)),
    delete: [...plan.delete].sort((a, b) => a.snapshotId.localeCompare(b.snapshotId)),
  };
}
