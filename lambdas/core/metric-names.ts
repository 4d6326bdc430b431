// The CloudWatch names the handlers publish under and the alarms watch: one place, so that a renamed
// metric or dimension cannot leave an alarm looking at nothing (an alarm on missing data would fire).

/** Powertools' namespace and service name; the service is also a dimension of every metric. */
export const MetricNamespace = "EtcdBackup";
export const MetricServiceName = "etcd-backup";

/** The dimensions: `service` is added by Powertools to every metric, `Cluster` by the step handler. */
export const MetricDimensions = { service: "service", cluster: "Cluster" } as const;

/** Every metric the steps publish; the freshness alarms watch snapshotVerified or newestVerifiedSnapshotAge. */
export const MetricNames = {
  snapshotVerified: "SnapshotVerified",
  snapshotVerificationFailed: "SnapshotVerificationFailed",
  backupFailed: "BackupFailed",
  restoreSucceeded: "RestoreSucceeded",
  restoreFailed: "RestoreFailed",
  /** A successful restore's own work, from the lease taken after approval to its notice (milliseconds). */
  restoreDuration: "RestoreDuration",
  /** How long the Kubernetes API was down in a successful restore, from the stop-apiserver barrier (milliseconds). */
  restoreOutage: "RestoreOutage",
  snapshotBytes: "SnapshotBytes",
  snapshotDuration: "SnapshotDuration",
  snapshotThroughput: "SnapshotThroughput",
  clientCertificateDaysLeft: "ClientCertificateDaysLeft",
  snapshotsPruned: "SnapshotsPruned",
  snapshotsRetainedByObjectLock: "SnapshotsRetainedByObjectLock",
  /**
   * Members whose HashKV at a verified snapshot's revision is not the snapshot's (member-hash-check.ts):
   * published at every comparison, 0 when all that answered agree.
   */
  membersHashMismatched: "MembersHashMismatched",
  /** Seconds since the newest verified snapshot started: the freshness check of schedules beyond a week. */
  newestVerifiedSnapshotAge: "NewestVerifiedSnapshotAge",
} as const;

/** A step can publish only these names: a misspelt one fails the type check instead of an alarm. */
export type MetricName = (typeof MetricNames)[keyof typeof MetricNames];
