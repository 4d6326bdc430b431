// Exit codes of every `etcd-backup` command, documented in the README.
import { ErrorNames } from "../lambdas/core/errors.js";

export const ExitCodes = {
  ok: 0,
  /** An unexpected failure. */
  failure: 1,
  /** Wrong flags or arguments, or an invalid configuration. */
  usage: 2,
  /** The snapshot is corrupt or does not match what was recorded. */
  corrupt: 3,
  /** etcd could not be reached or broke off the stream. */
  etcdUnavailable: 4,
  /** S3 or DynamoDB failed. */
  storageUnavailable: 5,
  /** The snapshot, object, bucket or catalogue row does not exist. */
  notFound: 6,
  /** The cluster's lease or a catalogue row is held or in a conflicting state. */
  conflict: 7,
  /** A workflow was stopped before it changed anything or finished: rejected, not approved in time, aborted. */
  stopped: 8,
} as const;

export function exitCodeFor(error: unknown): number {
  switch ((error as { name?: string } | undefined)?.name) {
    case ErrorNames.InvalidInput:
      return ExitCodes.usage;
    case ErrorNames.SnapshotCorrupt:
      return ExitCodes.corrupt;
    case ErrorNames.EtcdUnavailable:
    case ErrorNames.EtcdAccessDenied:
    case ErrorNames.SnapshotStreamInterrupted:
    case ErrorNames.KubernetesApi:
    case ErrorNames.KubernetesAccessDenied:
      return ExitCodes.etcdUnavailable;
    case ErrorNames.StorageUnavailable:
    case ErrorNames.StorageAccessDenied:
    case ErrorNames.CatalogueUnavailable:
      return ExitCodes.storageUnavailable;
    case ErrorNames.SnapshotNotFound:
    case ErrorNames.ExecutionNotFound:
    case ErrorNames.BucketNotFound:
      return ExitCodes.notFound;
    case ErrorNames.CatalogueConflict:
    case ErrorNames.LeaseHeld:
      return ExitCodes.conflict;
    default:
      return ExitCodes.failure;
  }
}
