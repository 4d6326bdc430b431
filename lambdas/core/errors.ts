// Every failure the product can report, as a class with a stable `name`.
// The names are the contract with the state machines' Retry and Catch (statemachine/*.asl.json),
// so they are constants here and a test checks that every name the ASL mentions exists.

export const ErrorNames = {
  /** etcd could not be reached or answered with an error before the snapshot started. Transient. */
  EtcdUnavailable: "EtcdUnavailableError",
  /**
   * etcd refused the product's identity (no or a foreign client certificate, etcd authentication), or its
   * own certificate could not be verified with the configured CA. Never retried: a secret must change.
   */
  EtcdAccessDenied: "EtcdAccessDeniedError",
  /** The snapshot stream broke off (member died, connection reset). Transient: a retry takes a new snapshot. */
  SnapshotStreamInterrupted: "SnapshotStreamInterruptedError",
  /** The bytes are not a sound snapshot: trailer mismatch, truncation, bad bbolt structure. Never retried. */
  SnapshotCorrupt: "SnapshotCorruptError",
  /** S3 failed a request: throttled, 5xx, connection lost. Transient. */
  StorageUnavailable: "StorageUnavailableError",
  /** S3 refused the function: access denied, no such bucket, a disabled KMS key. Never retried. */
  StorageAccessDenied: "StorageAccessDeniedError",
  /** DynamoDB kept throttling, failing with 5xx or unreachable after the SDK's own retries. Transient. */
  CatalogueUnavailable: "CatalogueUnavailableError",
  /** The object is missing or differs from what the catalogue recorded. */
  SnapshotNotFound: "SnapshotNotFoundError",
  /** The CLI: an execution, or a restore waiting for an answer, that does not exist (any more). */
  ExecutionNotFound: "ExecutionNotFoundError",
  /** The CLI: the S3 bucket its command line names does not exist (S3's NoSuchBucket). */
  BucketNotFound: "BucketNotFoundError",
  /** A catalogue write found the row in a state that forbids it. */
  CatalogueConflict: "CatalogueConflictError",
  /** The input or configuration is invalid; retrying cannot help. */
  InvalidInput: "InvalidInputError",
  /** Another execution holds the cluster's lease. */
  LeaseHeld: "LeaseHeldError",
  /** The Kubernetes API (or EKS/STS on the way to it) was unreachable, throttled or failed with 5xx. Transient. */
  KubernetesApi: "KubernetesApiError",
  /** The Kubernetes API refused the backup identity (401/403), or its role could not be assumed. */
  KubernetesAccessDenied: "KubernetesAccessDeniedError",
} as const;

export type ErrorName = (typeof ErrorNames)[keyof typeof ErrorNames];

/** Base of every named error: the `name` is what Step Functions sees as the error type. */
export abstract class EtcdBackupError extends Error {
  abstract override readonly name: ErrorName;
  /** Whether a retry of the same step may succeed. */
  abstract readonly transient: boolean;
}

export class EtcdUnavailableError extends EtcdBackupError {
  override readonly name = ErrorNames.EtcdUnavailable;
  readonly transient = true;
}

/** Not transient: the TLS material or etcd's authentication must change first. */
export class EtcdAccessDeniedError extends EtcdBackupError {
  override readonly name = ErrorNames.EtcdAccessDenied;
  readonly transient = false;
}

export class SnapshotStreamInterruptedError extends EtcdBackupError {
  override readonly name = ErrorNames.SnapshotStreamInterrupted;
  readonly transient = true;
}

export class SnapshotCorruptError extends EtcdBackupError {
  override readonly name = ErrorNames.SnapshotCorrupt;
  readonly transient = false;
}

export class StorageUnavailableError extends EtcdBackupError {
  override readonly name = ErrorNames.StorageUnavailable;
  readonly transient = true;
}

/** Not transient: a missing permission, bucket or key does not come back between retries. */
export class StorageAccessDeniedError extends EtcdBackupError {
  override readonly name = ErrorNames.StorageAccessDenied;
  readonly transient = false;
}

export class CatalogueUnavailableError extends EtcdBackupError {
  override readonly name = ErrorNames.CatalogueUnavailable;
  readonly transient = true;
}

export class SnapshotNotFoundError extends EtcdBackupError {
  override readonly name = ErrorNames.SnapshotNotFound;
  readonly transient = false;
}

export class ExecutionNotFoundError extends EtcdBackupError {
  override readonly name = ErrorNames.ExecutionNotFound;
  readonly transient = false;
}

/** Not transient: the bucket must be created, or another named. */
export class BucketNotFoundError extends EtcdBackupError {
  override readonly name = ErrorNames.BucketNotFound;
  readonly transient = false;
}

export class CatalogueConflictError extends EtcdBackupError {
  override readonly name = ErrorNames.CatalogueConflict;
  readonly transient = false;
}

export class InvalidInputError extends EtcdBackupError {
  override readonly name = ErrorNames.InvalidInput;
  readonly transient = false;
}

export class LeaseHeldError extends EtcdBackupError {
  override readonly name = ErrorNames.LeaseHeld;
  readonly transient = true;
}

export class KubernetesApiError extends EtcdBackupError {
  override readonly name = ErrorNames.KubernetesApi;
  readonly transient = true;
}

/** Not transient: wrong credentials or missing RBAC do not fix themselves between retries. */
export class KubernetesAccessDeniedError extends EtcdBackupError {
  override readonly name = ErrorNames.KubernetesAccessDenied;
  readonly transient = false;
}

/** A one-line description of any thrown value, for logs and CLI output. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
