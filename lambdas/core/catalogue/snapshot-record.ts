// What the catalogue knows about one snapshot, as read back from the table. Times are ISO 8601 strings
// so that records pass through Step Functions as they are.
import type { MemberHashCheck } from "../snapshot/member-hash-check.js";

export interface SnapshotKvHashFigure {
  hash: number;
  /** -1: the snapshot was never compacted. */
  compactRevision: number;
}

export const SnapshotStatus = {
  InProgress: "IN_PROGRESS",
  Uploaded: "UPLOADED",
  Verified: "VERIFIED",
  Failed: "FAILED",
  Deleted: "DELETED",
} as const;

export type SnapshotStatus = (typeof SnapshotStatus)[keyof typeof SnapshotStatus];

export const snapshotStatuses: readonly SnapshotStatus[] = Object.values(SnapshotStatus);

export interface SnapshotFailure {
  /** The named error (`ErrorNames`) or the error type Step Functions reported. */
  errorName: string;
  message: string;
}

export interface SnapshotRecord {
  cluster: string;
  /** Sortable by time, e.g. `20261124T193600Z-3f9a1c`. */
  snapshotId: string;
  status: SnapshotStatus;
  bucket: string;
  key: string;
  /** The S3 object version, on a versioned bucket; what retention deletes. */
  versionId?: string;
  /** The etcd member the snapshot was streamed from. */
  sourceMember: string;
  etcdVersion?: string;
  startedAt: string;
  executionArn?: string;
  /** The retention tiers that keep it, as the latest prune found them: `hourly,daily`, `newest-verified`. */
  retentionTier?: string;
  /** Free-form labels, e.g. `pre-restore`. */
  tags: string[];
  /** Set from UPLOADED on. */
  bytes?: number;
  sha256?: string;
  completedAt?: string;
  durationMs?: number;
  /** Set from VERIFIED on: the figures read back from the stored object. */
  revision?: number;
  totalKey?: number;
  liveKeyCount?: number;
  /** The members' HashKV at the revision against the snapshot's: who agrees, who differs, who could not answer. */
  memberHash?: MemberHashCheck;
  /**
   * etcd's HashKV at the revision, computed from the snapshot for its own compact revision: what each
   * member restored from it must answer (unless the restore bumped its revision).
   */
  kvHash?: SnapshotKvHashFigure;
  verifiedAt?: string;
  /**
   * A restore that chose this snapshot and may still be waiting for its approval: retention keeps the
   * snapshot until then (the restore's execution, and the end of its approval wait and work).
   */
  restoreHeldBy?: string;
  restoreHeldUntil?: string;
  /** Set on FAILED. */
  failure?: SnapshotFailure;
  failedAt?: string;
  /** Set on DELETED. */
  deletedAt?: string;
  /** Epoch seconds, for DynamoDB TTL on AWS; only on DELETED rows. */
  expiresAt?: number;
}

/** A VERIFIED record, whose upload and verification figures are all present. */
export interface VerifiedSnapshotRecord extends SnapshotRecord {
  status: typeof SnapshotStatus.Verified;
  bytes: number;
  sha256: string;
  completedAt: string;
  durationMs: number;
  revision: number;
  totalKey: number;
  liveKeyCount: number;
  verifiedAt: string;
}

export function isVerifiedSnapshot(record: SnapshotRecord): record is VerifiedSnapshotRecord {
  return record.status === SnapshotStatus.Verified;
}
