// The prune state: apply the target's retention policy to every snapshot the catalogue holds for the
// cluster. Also what `etcd-backup prune [--dry-run]` runs.
import type { SnapshotRecord } from "../catalogue/snapshot-record.js";
import { SnapshotStatus } from "../catalogue/snapshot-record.js";
import { findTarget } from "../config/target-config.js";
import { applyRetentionPlan, type PruneSummary, pruneFailureError } from "../retention/prune-snapshots.js";
import { planRetention, type RetentionPlan } from "../retention/retention-policy.js";
import type { BackupDependencies } from "./backup-dependencies.js";
import type { ExecutionInput } from "./step-payloads.js";

export interface PruneOptions {
  /** Plan only: nothing is deleted, and the plan is returned. */
  dryRun?: boolean;
}

export type DryRunResult = RetentionPlan & { dryRun: true };

/** Rows per catalogue page while reading the whole cluster. */
const listPageSize = 1000;
/** DELETED rows are tombstones the policy ignores: they are not even read. */
const liveStatuses = [
  SnapshotStatus.InProgress,
  SnapshotStatus.Uploaded,
  SnapshotStatus.Verified,
  SnapshotStatus.Failed,
];

export function pruneSnapshots(
  dependencies: BackupDependencies,
  input: ExecutionInput,
  options: { dryRun: true },
): Promise<DryRunResult>;
export function pruneSnapshots(
  dependencies: BackupDependencies,
  input: ExecutionInput,
  options?: { dryRun?: false },
): Promise<PruneSummary>;
export function pruneSnapshots(
  dependencies: BackupDependencies,
  input: ExecutionInput,
  options?: PruneOptions,
): Promise<PruneSummary | DryRunResult>;
export async function pruneSnapshots(
  dependencies: BackupDependencies,
  input: ExecutionInput,
  options: PruneOptions = {},
): Promise<PruneSummary | DryRunResult> {
  const { cluster } = input;
  const { reporter } = dependencies;
  const policy = findTarget(await dependencies.loadTargets(), cluster).retention;
  const records = await listLiveSnapshots(dependencies, cluster);
  const plan = planRetention(records, policy, dependencies.now());
  if (options.dryRun) {
    reporter.info("retention planned (dry run, nothing deleted)", {
      keep: plan.keep.length,
      delete: plan.delete.length,
    });
    return { dryRun: true, ...plan };
  }

  const { summary, failures } = await applyRetentionPlan(dependencies, records, plan);
  reporter.metric("SnapshotsPruned", "Count", summary.deleted.length);
  if (summary.retained.length > 0) {
    reporter.metric("SnapshotsRetainedByObjectLock", "Count", summary.retained.length);
    reporter.warn("Object Lock kept snapshots the policy would delete", { retained: summary.retained });
  }
  reporter.info("snapshots pruned", {
    deleted: summary.deleted.length,
    retained: summary.retained.length,
    kept: summary.kept,
    failed: failures.length,
  });
  if (failures.length > 0) throw pruneFailureError(failures, summary.deleted.length);
  return summary;
}

async function listLiveSnapshots(
  dependencies: BackupDependencies,
  cluster: string,
): Promise<SnapshotRecord[]> {
  const records: SnapshotRecord[] = [];
  let nextToken: string | undefined;
  do {
    const page = await dependencies.catalogue.listSnapshots(cluster, {
      limit: listPageSize,
      status: liveStatuses,
      ...(nextToken === undefined ? {} : { nextToken }),
    });
    records.push(...page.snapshots);
    nextToken = page.nextToken;
  } while (nextToken !== undefined);
  return records;
}
