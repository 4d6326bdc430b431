// Which catalogued snapshots to keep and which to delete: a pure grandfather-father-son policy over a
// cluster's catalogue rows, with no I/O, so that the prune step and `prune --dry-run` agree exactly.
//
// Tier semantics (those of restic's and borg's `--keep-hourly` and friends): each tier keeps the newest
// VERIFIED snapshot of each of its N most recent periods *that have one* — walking back through the
// snapshots, not through the calendar — so an outage does not empty a tier: after two silent weeks,
// `hourly: 24` still keeps the last 24 hourly snapshots. Periods are UTC: the hour, the day, the ISO 8601
// week (Monday to Sunday, numbered in its Thursday's year) and the month. Tiers are independent: one
// snapshot may serve several, and lists each as a reason. A snapshot's time is its `startedAt`; two at
// the same instant are ordered by snapshot id.
import { backupLeaseSeconds } from "../backup/backup-dependencies.js";
import { type SnapshotRecord, SnapshotStatus } from "../catalogue/snapshot-record.js";
import type { RetentionPolicy } from "../config/target-config.js";

/** The tag of the safety snapshot a restore takes first: kept `preRestoreDays`, outside the tiers. */
export const preRestoreTag = "pre-restore";

/**
 * The youngest an IN_PROGRESS or UPLOADED row can be and still be taken for abandoned, whatever the
 * grace period: no backup execution outlives its lease.
 */
export const minimumAbandonedAgeMs = backupLeaseSeconds * 1000;

export const RetentionTiers = ["hourly", "daily", "weekly", "monthly"] as const;
export type RetentionTier = (typeof RetentionTiers)[number];

export const KeepReason = {
  Hourly: "hourly",
  Daily: "daily",
  Weekly: "weekly",
  Monthly: "monthly",
  /** The newest VERIFIED snapshot is never deleted, whatever the tiers say. */
  NewestVerified: "newest-verified",
  /** A restore's safety snapshot within its `preRestoreDays`. */
  PreRestore: "pre-restore",
  /** A tagged snapshot taken on demand (`backup`), within its `onDemandDays`. */
  OnDemand: "on-demand",
  /** Chosen by a restore that may still be waiting for approval (`restoreHeldUntil` not passed). */
  RestorePending: "restore-pending",
  /** A FAILED row younger than `failedGraceHours`, left for inspection. */
  FailedGracePeriod: "failed-grace-period",
  /** An IN_PROGRESS or UPLOADED row that may still belong to a running backup. */
  InProgress: "in-progress",
  /** A row whose times cannot be read: nothing is deleted on a guess. */
  UnreadableTime: "unreadable-time",
} as const;
export type KeepReason = (typeof KeepReason)[keyof typeof KeepReason];

export const DeleteReason = {
  /** VERIFIED, but the newest of no period any tier keeps. */
  OutsideTiers: "outside-tiers",
  PreRestoreExpired: "pre-restore-expired",
  OnDemandExpired: "on-demand-expired",
  /** FAILED longer ago than `failedGraceHours`. */
  Failed: "failed",
  /** IN_PROGRESS or UPLOADED longer than `failedGraceHours`: a run that died without its Catch. */
  Abandoned: "abandoned",
} as const;
export type DeleteReason = (typeof DeleteReason)[keyof typeof DeleteReason];

export interface RetentionPlan {
  /** Newest first. */
  keep: Array<{ snapshotId: string; reasons: KeepReason[] }>;
  /** Newest first. */
  delete: Array<{ snapshotId: string; reason: DeleteReason }>;
}

const hourMs = 3600 * 1000;
const dayMs = 24 * hourMs;

/**
 * Plans retention for one cluster's rows as of `now`. DELETED rows are ignored; every other row appears
 * in exactly one of `keep` and `delete`.
 */
export function planRetention(records: SnapshotRecord[], policy: RetentionPolicy, now: Date): RetentionPlan {
  const keepReasons = new Map<string, KeepReason[]>();
  const deleteReasons = new Map<string, DeleteReason>();
  const keep = (snapshotId: string, reason: KeepReason) => {
    const reasons = keepReasons.get(snapshotId) ?? [];
    if (!reasons.includes(reason)) reasons.push(reason);
    keepReasons.set(snapshotId, reasons);
  };

  const dated: Array<{ record: SnapshotRecord; time: number }> = [];
  for (const record of records) {
    if (record.status === SnapshotStatus.Deleted) continue;
    const time = Date.parse(record.startedAt);
    if (Number.isNaN(time)) keep(record.snapshotId, KeepReason.UnreadableTime);
    else dated.push({ record, time });
  }
  dated.sort((a, b) => b.time - a.time || compareDescending(a.record.snapshotId, b.record.snapshotId));

  const verified = dated.filter(({ record }) => record.status === SnapshotStatus.Verified);
  const newestVerified = verified[0];
  if (newestVerified !== undefined) keep(newestVerified.record.snapshotId, KeepReason.NewestVerified);

  // Tagged snapshots (a restore's safety snapshot, one taken on demand before an upgrade) are kept for
  // their own days, outside the tiers: the next scheduled run in the same hour must not drop them.
  const keptOwnWay = (record: SnapshotRecord) =>
    record.tags.includes(preRestoreTag)
      ? { days: policy.preRestoreDays, kept: KeepReason.PreRestore, expired: DeleteReason.PreRestoreExpired }
      : record.tags.length > 0
        ? { days: policy.onDemandDays, kept: KeepReason.OnDemand, expired: DeleteReason.OnDemandExpired }
        : undefined;
  const scheduled = verified.filter(({ record }) => keptOwnWay(record) === undefined);
  for (const tier of RetentionTiers) {
    let periods = 0;
    let lastPeriod: string | undefined;
    for (const { record, time } of scheduled) {
      if (periods >= policy[tier]) break;
      const period = retentionPeriodKey(tier, new Date(time));
      if (period === lastPeriod) continue;
      lastPeriod = period;
      periods++;
      keep(record.snapshotId, tier);
    }
  }

  const failedGraceMs = policy.failedGraceHours * hourMs;
  for (const { record, time } of dated) {
    const { snapshotId } = record;
    switch (record.status) {
      case SnapshotStatus.Verified: {
        const own = keptOwnWay(record);
        if (record.restoreHeldUntil !== undefined && now.getTime() < Date.parse(record.restoreHeldUntil)) {
          keep(snapshotId, KeepReason.RestorePending);
        } else if (own === undefined) {
          if (!keepReasons.has(snapshotId)) deleteReasons.set(snapshotId, DeleteReason.OutsideTiers);
        } else if (now.getTime() < time + own.days * dayMs) {
          keep(snapshotId, own.kept);
        } else if (!keepReasons.has(snapshotId)) {
          deleteReasons.set(snapshotId, own.expired);
        }
        break;
      }
      case SnapshotStatus.Failed: {
        const since = latestTime(time, record.completedAt, record.failedAt);
        if (now.getTime() >= since + failedGraceMs) deleteReasons.set(snapshotId, DeleteReason.Failed);
        else keep(snapshotId, KeepReason.FailedGracePeriod);
        break;
      }
      case SnapshotStatus.InProgress:
      case SnapshotStatus.Uploaded: {
        const since = latestTime(time, record.completedAt);
        const abandonedAfterMs = Math.max(failedGraceMs, minimumAbandonedAgeMs);
        if (now.getTime() >= since + abandonedAfterMs) deleteReasons.set(snapshotId, DeleteReason.Abandoned);
        else keep(snapshotId, KeepReason.InProgress);
        break;
      }
      default:
        // A status this code does not know: keep it rather than guess.
        keep(snapshotId, KeepReason.UnreadableTime);
    }
  }

  const order = [
    ...dated.map(({ record }) => record.snapshotId),
    ...records.map((record) => record.snapshotId),
  ];
  const seen = new Set<string>();
  const plan: RetentionPlan = { keep: [], delete: [] };
  for (const snapshotId of order) {
    if (seen.has(snapshotId)) continue;
    seen.add(snapshotId);
    const reasons = keepReasons.get(snapshotId);
    const reason = deleteReasons.get(snapshotId);
    if (reasons !== undefined) plan.keep.push({ snapshotId, reasons });
    else if (reason !== undefined) plan.delete.push({ snapshotId, reason });
  }
  return plan;
}

/** The UTC period of a tier that `time` falls in, e.g. `2026-11-24T19`, `2026-11-24`, `2026-W48`, `2026-11`. */
export function retentionPeriodKey(tier: RetentionTier, time: Date): string {
  const iso = time.toISOString();
  switch (tier) {
    case "hourly":
      return iso.slice(0, 13);
    case "daily":
      return iso.slice(0, 10);
    case "monthly":
      return iso.slice(0, 7);
    case "weekly":
      return isoWeekKey(time);
  }
}

/** ISO 8601 week: weeks start on Monday, and a week belongs to the year its Thursday falls in. */
function isoWeekKey(time: Date): string {
  const daysSinceMonday = (time.getUTCDay() + 6) % 7;
  const thursday = new Date(
    Date.UTC(time.getUTCFullYear(), time.getUTCMonth(), time.getUTCDate() - daysSinceMonday + 3),
  );
  const year = thursday.getUTCFullYear();
  const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * dayMs)) + 1;
  return `${year}-W${String(week).padStart(2, "0")}`;
}

function latestTime(startedAt: number, ...times: Array<string | undefined>): number {
  return Math.max(
    startedAt,
    ...times
      .map((time) => (time === undefined ? Number.NaN : Date.parse(time)))
      .filter((t) => !Number.isNaN(t)),
  );
}

function compareDescending(a: string, b: string): number {
  if (a === b) return 0;
  return a < b ? 1 : -1;
}
