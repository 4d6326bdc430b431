// The backup data path: `source → integrity tap → sink`, one pipeline with backpressure end to end.
// The member's Status is taken just before and just after, so that verification can check the
// snapshot's revision lies between the two (on a live cluster it moves while the stream runs).
import { rename, rm } from "node:fs/promises";
import type { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { DeleteObjectCommand, PutObjectTaggingCommand, type S3Client } from "@aws-sdk/client-s3";
import { describeError } from "../errors.js";
import type { MemberStatus } from "../etcd/etcd-client.js";
import { MultipartUploadSink, type UploadedObject } from "../store/multipart-upload-sink.js";
import { storageError } from "../store/s3-errors.js";
import { FileSink } from "./file-sink.js";
import { IntegrityTap } from "./integrity-tap.js";
import { snapshotObjectKey } from "./snapshot-naming.js";
import type { SnapshotSource } from "./snapshot-source.js";

/** The object metadata key of the etcd cluster id a snapshot came from (checked before a restore). */
export const clusterIdMetadataKey = "etcd-cluster-id";

export interface StreamedSnapshot {
  /** Size of the snapshot file (database plus trailer). */
  bytes: number;
  /** Hex sha256 of the database, equal to etcd's trailer. */
  sha256: string;
  etcdVersion: string;
  memberId: string;
  clusterId: string;
  source: string;
  /** The member's revision just before the stream started: a lower bound for the snapshot's revision. */
  revisionBefore: number;
  /** The member's revision just after it ended: an upper bound, unless the member stopped answering. */
  revisionAfter: number | undefined;
  startedAt: string;
  durationMs: number;
}

export interface StreamSnapshotOptions {
  onProgress?: (bytes: number) => void;
}

/** Streams one snapshot into the sink made from the member's status (which names what is stored). */
export async function streamSnapshot(
  source: SnapshotSource,
  createSink: (before: MemberStatus) => Writable,
  options: StreamSnapshotOptions = {},
): Promise<StreamedSnapshot> {
  const startedAt = new Date();
  const before = await source.status();
  const sink = createSink(before);
  const stream = source.openStream();
  const tap = new IntegrityTap({
    expectedDatabaseBytes: () => stream.databaseBytes,
    onProgress: options.onProgress,
  });
  try {
    await pipeline(stream, tap, sink);
  } catch (error) {
    // pipeline rejects as soon as one stream fails; the sink's clean-up (aborting the upload, closing the
    // file) finishes later, and must have finished before the caller looks at what remains.
    if (!sink.closed) await new Promise((resolve) => sink.once("close", resolve));
    throw error;
  }
  // The snapshot is whole (the trailer matched); a member that stops answering now only loses the upper bound.
  const after = await source.status().catch(() => undefined);
  return {
    ...tap.result,
    etcdVersion: stream.serverVersion || before.version,
    memberId: before.memberId,
    clusterId: before.clusterId,
    source: source.description,
    revisionBefore: before.revision,
    revisionAfter: after?.revision,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
  };
}

export interface S3SnapshotDestination {
  client: S3Client;
  bucket: string;
  prefix: string;
  cluster: string;
  snapshotId: string;
  kmsKeyId?: string;
  partSize?: number;
  partsInFlight?: number;
}

export interface StoredSnapshot extends StreamedSnapshot {
  snapshotId: string;
  object: UploadedObject;
}

/** Streams one snapshot into S3; on any failure the multipart upload is aborted and nothing remains. */
export async function streamSnapshotToS3(
  source: SnapshotSource,
  destination: S3SnapshotDestination,
  options: StreamSnapshotOptions = {},
): Promise<StoredSnapshot> {
  const key = snapshotObjectKey(destination.prefix, destination.cluster, destination.snapshotId);
  let sink: MultipartUploadSink | undefined;
  const streamed = await streamSnapshot(
    source,
    (before) => {
      sink = new MultipartUploadSink({
        client: destination.client,
        bucket: destination.bucket,
        key,
        partSize: destination.partSize,
        partsInFlight: destination.partsInFlight,
        kmsKeyId: destination.kmsKeyId,
        metadata: {
          cluster: destination.cluster,
          "snapshot-id": destination.snapshotId,
          "etcd-version": before.version,
          "etcd-member-id": before.memberId,
          [clusterIdMetadataKey]: before.clusterId,
          "revision-before": String(before.revision),
        },
      });
      return sink;
    },
    options,
  );
  const object = (sink as unknown as MultipartUploadSink).result;
  // The sha256 is known only at the end, and S3 metadata is fixed at creation: it goes into tags.
  await tagSnapshotObject(destination.client, object, {
    sha256: streamed.sha256,
    "etcd-backup-status": "uploaded",
  }).catch((error: unknown) => discardAfter(error, destination.client, object));
  return { ...streamed, snapshotId: destination.snapshotId, object };
}

/**
 * A whole object that cannot be catalogued (its tagging or its catalogue row failed) would be known to
 * nobody: delete that version, then fail with the original error, saying whether the delete worked.
 * Under Object Lock the delete is refused and the version stays until its retention ends.
 */
export async function discardAfter(
  error: unknown,
  client: S3Client,
  object: Pick<UploadedObject, "bucket" | "key" | "versionId">,
): Promise<never> {
  const where = `s3://${object.bucket}/${object.key}${object.versionId ? ` version ${object.versionId}` : ""}`;
  const outcome = await client
    .send(new DeleteObjectCommand({ Bucket: object.bucket, Key: object.key, VersionId: object.versionId }))
    .then(
      () => `${where} was deleted`,
      (deleteError: unknown) => `${where} could not be deleted (${describeError(deleteError)})`,
    );
  if (error instanceof Error) {
    error.message = `${error.message}; the uncatalogued object ${outcome}`;
    throw error;
  }
  throw new Error(`${String(error)}; the uncatalogued object ${outcome}`);
}

/** Replaces the tag set of the snapshot's object version. */
export async function tagSnapshotObject(
  client: S3Client,
  object: Pick<UploadedObject, "bucket" | "key" | "versionId">,
  tags: Record<string, string>,
): Promise<void> {
  try {
    await client.send(
      new PutObjectTaggingCommand({
        Bucket: object.bucket,
        Key: object.key,
        VersionId: object.versionId,
        Tagging: { TagSet: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) },
      }),
    );
  } catch (error) {
    throw storageError(`tagging s3://${object.bucket}/${object.key} failed`, error);
  }
}

/**
 * Streams one snapshot into a local file as `etcdctl snapshot save` does: into `<path>.part`, fsynced, then
 * renamed, so that the path only ever holds a whole snapshot; the part file is removed on failure.
 */
export async function streamSnapshotToFile(
  source: SnapshotSource,
  path: string,
  options: StreamSnapshotOptions = {},
): Promise<StreamedSnapshot & { path: string }> {
  const partPath = `${path}.part`;
  try {
    const streamed = await streamSnapshot(source, () => new FileSink(partPath), options);
    await rename(partPath, path);
    return { ...streamed, path };
  } catch (error) {
    await rm(partPath, { force: true });
    throw error;
  }
}
