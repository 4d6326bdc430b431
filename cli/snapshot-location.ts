import { BucketNotFoundError, InvalidInputError } from "../lambdas/core/errors.js";
import { isMissingBucket } from "../lambdas/core/store/s3-errors.js";

export type SnapshotLocation = { kind: "file"; path: string } | { kind: "s3"; bucket: string; key: string };

/** `s3://bucket/key-or-prefix` or a local path. */
export function parseSnapshotLocation(value: string): SnapshotLocation {
  if (!value.startsWith("s3://")) return { kind: "file", path: value };
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(value);
  if (!match?.[1]) throw new InvalidInputError(`"${value}" is not an S3 location: expected s3://BUCKET/KEY`);
  return { kind: "s3", bucket: match[1], key: match[2] ?? "" };
}

/**
 * The error to report when S3 answered NoSuchBucket, anywhere among the causes: the core reports it as any
 * refusal (StorageAccessDeniedError, for a Lambda function whose role, bucket or KMS key is wrong), but a
 * bucket given on the command line is the operator's to create or correct. Otherwise the error itself.
 */
export function withMissingBucketNamed(error: unknown, bucket: string, given: string): unknown {
  if (!isMissingBucket(error)) return error;
  return new BucketNotFoundError(
    `bucket ${bucket} does not exist (${given}): create it, or name an existing bucket`,
    { cause: error },
  );
}
