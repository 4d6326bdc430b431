// Verification of what was stored: the object is read back from S3 (not the bytes that were sent),
// proven sound by the bbolt reader, and compared with what the backup step recorded.

import type { Readable } from "node:stream";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { SnapshotCorruptError, SnapshotNotFoundError } from "../errors.js";
import { storageError } from "../store/s3-errors.js";
import type { HashedMember, MemberHashCheckMode } from "./member-hash-check.js";
import { type SnapshotReport, verifySnapshotStream } from "./verify-snapshot.js";

export interface StoredObjectLocation {
  bucket: string;
  key: string;
  versionId?: string | undefined;
}

/** What the backup step saw, for comparison with what verification finds. */
export interface ExpectedSnapshot {
  bytes?: number;
  sha256?: string;
  revisionBefore?: number;
  revisionAfter?: number | undefined;
}

export interface VerifiedSnapshot extends SnapshotReport {
  /** The revision the snapshot restores to (FACTS §4: the highest of the key and compaction revisions, at least 1). */
  snapshotRevision: number;
}

export async function verifyStoredSnapshot(
  client: S3Client,
  location: StoredObjectLocation,
  expected: ExpectedSnapshot,
  options: {
    stagingDir?: string | undefined;
    onStaged?: (bytes: number, totalBytes: number | undefined) => void;
    /** The member the snapshot came from, then its peers: their HashKV is compared with the snapshot's. */
    members?: readonly HashedMember[] | undefined;
    memberHashCheck?: MemberHashCheckMode | undefined;
  } = {},
): Promise<VerifiedSnapshot> {
  const body = await openStoredObject(client, location);
  const { onStaged } = options;
  const report = await verifySnapshotStream(body.stream, {
    stagingDir: options.stagingDir,
    members: options.members,
    memberHashCheck: options.memberHashCheck,
    expectedBytes: body.bytes,
    ...(onStaged ? { onStaged: (bytes: number) => onStaged(bytes, body.bytes) } : {}),
  });
  return checkAgainstExpected(report, expected, `s3://${location.bucket}/${location.key}`);
}

/** Compares a verification report with what the backup recorded; a difference means corruption. */
export function checkAgainstExpected(
  report: SnapshotReport,
  expected: ExpectedSnapshot,
  where: string,
): VerifiedSnapshot {
  const fail = (detail: string) => new SnapshotCorruptError(`${where}: ${detail}`);
  if (expected.bytes !== undefined && report.fileBytes !== expected.bytes) {
    throw fail(`holds ${report.fileBytes} bytes, but ${expected.bytes} were streamed`);
  }
  if (expected.sha256 !== undefined && report.sha256 !== expected.sha256) {
    throw fail(`sha256 is ${report.sha256}, but the stream's was ${expected.sha256}`);
  }
  // etcd's store starts at revision 1, so an empty one restores to 1 though its key bucket holds nothing.
  const snapshotRevision = Math.max(report.revision, report.compactRevision ?? 0, 1);
  if (expected.revisionBefore !== undefined && snapshotRevision < expected.revisionBefore) {
    throw fail(
      `revision ${snapshotRevision} is older than the member's revision ${expected.revisionBefore} before the snapshot`,
    );
  }
  if (expected.revisionAfter !== undefined && snapshotRevision > expected.revisionAfter) {
    throw fail(
      `revision ${snapshotRevision} is newer than the member's revision ${expected.revisionAfter} after the snapshot`,
    );
  }
  return { ...report, snapshotRevision };
}

export async function openStoredObject(
  client: S3Client,
  location: StoredObjectLocation,
): Promise<{ stream: Readable; bytes: number | undefined }> {
  try {
    const reply = await client.send(
      new GetObjectCommand({ Bucket: location.bucket, Key: location.key, VersionId: location.versionId }),
    );
    return { stream: reply.Body as Readable, bytes: reply.ContentLength };
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name === "NoSuchKey" || name === "NoSuchVersion" || name === "NotFound") {
      throw new SnapshotNotFoundError(
        `s3://${location.bucket}/${location.key}${location.versionId ? ` version ${location.versionId}` : ""} does not exist`,
        { cause: error },
      );
    }
    throw storageError(`reading s3://${location.bucket}/${location.key} failed`, error);
  }
}
