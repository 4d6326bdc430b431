import { InvalidInputError } from "../lambdas/core/errors.js";

export type SnapshotLocation = { kind: "file"; path: string } | { kind: "s3"; bucket: string; key: string };

/** `s3://bucket/key-or-prefix` or a local path. */
export function parseSnapshotLocation(value: string): SnapshotLocation {
  if (!value.startsWith("s3://")) return { kind: "file", path: value };
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(value);
  if (!match?.[1]) throw new InvalidInputError(`"${value}" is not an S3 location: expected s3://BUCKET/KEY`);
  return { kind: "s3", bucket: match[1], key: match[2] ?? "" };
}
