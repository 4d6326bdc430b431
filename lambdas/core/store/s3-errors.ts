// Which S3 failures a retry can fix. A throttle, a 5xx or a dropped connection can; a refusal cannot:
// the function's role lacks a permission, the bucket is gone, or the KMS key is disabled — retrying
// would take three more full etcd snapshots to hear the same answer.
import { describeError, StorageAccessDeniedError, StorageUnavailableError } from "../errors.js";

const refusalNames = new Set([
  "AccessDenied",
  "AllAccessDisabled",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "InvalidToken",
  "NoSuchBucket",
  "InvalidBucketName",
  "AccountProblem",
]);

/** S3 refused the request for a reason that stays until someone changes the deployment. */
export function isRefusedByS3(error: unknown): boolean {
  const { name, $metadata } = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  if (name && (refusalNames.has(name) || name.startsWith("KMS."))) return true;
  return $metadata?.httpStatusCode === 403;
}

/** S3 answered NoSuchBucket, to this request or to one among its causes (the core wraps what S3 said). */
export function isMissingBucket(error: unknown): boolean {
  for (let cause = error, depth = 0; cause instanceof Object && depth < 8; depth++) {
    const { name, Code } = cause as { name?: unknown; Code?: unknown };
    if (name === "NoSuchBucket" || Code === "NoSuchBucket") return true;
    cause = (cause as { cause?: unknown }).cause;
  }
  return false;
}

/** The named error for an S3 failure: StorageAccessDeniedError for a refusal, else transient. */
export function storageError(
  what: string,
  cause: unknown,
): StorageUnavailableError | StorageAccessDeniedError {
  const message = `${what}: ${describeError(cause)}`;
  return isRefusedByS3(cause)
    ? new StorageAccessDeniedError(
        `${message} (check the function's role, the bucket and its KMS key; retrying cannot help)`,
        { cause },
      )
    : new StorageUnavailableError(message, { cause });
}
