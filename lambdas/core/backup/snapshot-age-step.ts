// The scheduled freshness check, for targets whose schedule leaves more than CloudWatch's 7-day alarm
// range between backups: it publishes how old the cluster's newest verified snapshot is, and an alarm
// on that age (and on the check falling silent) stands in for the verified-snapshot count.
import * as z from "zod";
import { MetricNames } from "../metric-names.js";
import type { BackupDependencies } from "./backup-dependencies.js";

/** What the freshness schedule sends: the shape of an execution's input, so the step wrapper tags by cluster. */
export const snapshotAgeInput = z.object({ input: z.object({ cluster: z.string().min(1) }) });

export interface SnapshotAgeReport {
  cluster: string;
  /** Absent when the cluster has no verified snapshot: no data point is published, which the alarm treats as breaching. */
  newestVerified?: { snapshotId: string; startedAt: string; ageSeconds: number };
}

/**
 * The age counts from when the snapshot started: the state it holds is at least that old. The verified
 * index is eventually consistent, which can only make a snapshot verified a moment ago look older.
 */
export async function reportNewestSnapshotAge(
  dependencies: Pick<BackupDependencies, "catalogue" | "now" | "reporter">,
  cluster: string,
): Promise<SnapshotAgeReport> {
  const newest = await dependencies.catalogue.findLatestVerified(cluster);
  if (!newest) {
    dependencies.reporter.warn("no verified snapshot of this cluster in the catalogue", { cluster });
    return { cluster };
  }
  const ageSeconds = Math.max(
    0,
    Math.round((dependencies.now().getTime() - Date.parse(newest.startedAt)) / 1000),
  );
  dependencies.reporter.metric(MetricNames.newestVerifiedSnapshotAge, "Seconds", ageSeconds);
  dependencies.reporter.info("newest verified snapshot", {
    snapshotId: newest.snapshotId,
    startedAt: newest.startedAt,
    ageSeconds,
  });
  return {
    cluster,
    newestVerified: { snapshotId: newest.snapshotId, startedAt: newest.startedAt, ageSeconds },
  };
}
