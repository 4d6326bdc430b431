// A Writable that streams into one S3 multipart upload. Memory is bounded by partSize × (partsInFlight + 1):
// each part is filled in a preallocated (and, once its upload succeeded, reused) buffer and a write waits
// while the in-flight parts are full.
// Each part carries a CRC32C additional checksum (computed natively, so hashing costs nothing here; SHA-256
// would hash every byte a second time after the trailer check). On any failure no further part starts and
// the upload is aborted once every part in flight has settled, so that no part and no partial object remain.
import { Writable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { crc32c, crc32cToBase64 } from "../checksum/crc32c.js";
import { InvalidInputError, StorageUnavailableError } from "../errors.js";
import { storageError } from "./s3-errors.js";
import { signWithoutPayloadHash } from "./unsigned-payload.js";

export interface MultipartUploadOptions {
  client: S3Client;
  bucket: string;
  key: string;
  /** Bytes per part: at least 5 MiB (S3's minimum for all but the last part). */
  partSize?: number;
  /** Parts uploading at once. */
  partsInFlight?: number;
  metadata?: Record<string, string>;
  /** SSE-KMS key id or ARN; without one the bucket's default encryption applies. */
  kmsKeyId?: string;
  /** URL-encoded tag set applied with the object (`a=b&c=d`). */
  tagging?: string;
}

export interface UploadedObject {
  bucket: string;
  key: string;
  versionId: string | undefined;
  etag: string | undefined;
  parts: number;
  bytes: number;
}

export const defaultPartSize = 8 * 1024 * 1024;
export const defaultPartsInFlight = 4;
const minimumPartSize = 5 * 1024 * 1024;
const maximumParts = 10_000;

export class MultipartUploadSink extends Writable {
  private uploadId: string | undefined;
  private readonly partSize: number;
  private readonly partsInFlight: number;
  private buffer: Buffer;
  /** Part buffers whose upload has succeeded, reused: fresh 8 MiB buffers cost page faults and GC. */
  private readonly spareBuffers: Buffer[] = [];
  private filled = 0;
  private bytes = 0;
  private nextPartNumber = 1;
  private readonly completed: CompletedPart[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private readonly abortController = new AbortController();
  /** Set once the upload is to be aborted: from then on no part may start. */
  private aborting = false;
  private firstError: Error | undefined;
  private uploaded: UploadedObject | undefined;

  constructor(private readonly options: MultipartUploadOptions) {
    super({ highWaterMark: 1024 * 1024 });
    this.partSize = options.partSize ?? defaultPartSize;
    this.partsInFlight = options.partsInFlight ?? defaultPartsInFlight;
    if (this.partSize < minimumPartSize) {
      throw new InvalidInputError(
        `part size ${this.partSize} is below S3's minimum of ${minimumPartSize} bytes`,
      );
    }
    this.buffer = Buffer.allocUnsafe(this.partSize);
  }

  /** What was stored; available once the stream has finished. */
  get result(): UploadedObject {
    if (!this.uploaded) throw new Error("the upload has not completed");
    return this.uploaded;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    const { bucket, key, metadata, kmsKeyId, tagging } = this.options;
    this.options.client
      .send(
        new CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          ContentType: "application/octet-stream",
          ChecksumAlgorithm: "CRC32C",
          Metadata: metadata,
          Tagging: tagging,
          ...(kmsKeyId
            ? { ServerSideEncryption: "aws:kms", SSEKMSKeyId: kmsKeyId, BucketKeyEnabled: true }
            : {}),
        }),
        { abortSignal: this.abortController.signal },
      )
      .then(
        (reply) => {
          this.uploadId = reply.UploadId;
          callback(this.uploadId ? null : this.storageError("CreateMultipartUpload returned no upload id"));
        },
        (error: unknown) => callback(this.storageError("CreateMultipartUpload failed", error)),
      );
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.bytes += chunk.length;
    this.fill(chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.finishUpload().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.uploaded || !this.uploadId) {
      callback(error);
      return;
    }
    this.aborting = true;
    this.abortController.abort();
    this.abortUpload().then(
      () => callback(error),
      (abortError: Error) => {
        if (!error) {
          callback(abortError);
          return;
        }
        // The caller reports the first error (the pipeline's), so the failed abort, which may leave parts
        // behind, is told in that error's message rather than lost.
        error.message += `; then ${abortError.message}`;
        callback(error);
      },
    );
  }

  private async fill(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const copied = chunk.copy(this.buffer, this.filled, offset);
      this.filled += copied;
      offset += copied;
      if (this.filled === this.partSize) await this.sendFilledPart();
    }
  }

  /** Starts uploading the filled buffer, waiting first while as many parts as allowed are in flight. */
  private async sendFilledPart(): Promise<void> {
    while (this.inFlight.size >= this.partsInFlight) await Promise.race(this.inFlight);
    if (this.firstError) throw this.firstError;
    // A write that waited for a slot may wake after the abort began: its part would race the abort.
    if (this.aborting) throw this.storageError("the upload is being aborted; no part may start");
    const partNumber = this.nextPartNumber++;
    if (partNumber > maximumParts) {
      throw new InvalidInputError(`snapshot needs more than ${maximumParts} parts of ${this.partSize} bytes`);
    }
    const partBuffer = this.buffer;
    const body = partBuffer.subarray(0, this.filled);
    this.buffer = this.spareBuffers.pop() ?? Buffer.allocUnsafe(this.partSize);
    this.filled = 0;
    const upload: Promise<void> = this.uploadPart(partNumber, body)
      .then(
        (part) => {
          this.completed.push(part);
          // Only a settled, successful request has let go of its body; a failed one's buffer is dropped.
          this.spareBuffers.push(partBuffer);
        },
        (error: Error) => {
          this.firstError ??= error;
        },
      )
      .finally(() => this.inFlight.delete(upload));
    this.inFlight.add(upload);
  }

  private async uploadPart(partNumber: number, body: Buffer): Promise<CompletedPart> {
    const checksum = crc32cToBase64(crc32c(body, 0));
    const command = new UploadPartCommand({
      Bucket: this.options.bucket,
      Key: this.options.key,
      UploadId: this.uploadId,
      PartNumber: partNumber,
      Body: body,
      ContentLength: body.length,
      ChecksumCRC32C: checksum,
    });
    signWithoutPayloadHash(command);
    try {
      // Never cancelled: a part whose request is cancelled here may still be stored by S3 after the abort
      // (S3 documents it; s3rver did it in tests), so a failed upload waits for its parts to finish instead.
      const reply = await this.options.client.send(command);
      return { PartNumber: partNumber, ETag: reply.ETag, ChecksumCRC32C: checksum };
    } catch (error) {
      throw this.storageError(`UploadPart ${partNumber} failed`, error);
    }
  }

  private async finishUpload(): Promise<void> {
    if (this.filled > 0 || this.nextPartNumber === 1) await this.sendFilledPart();
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.firstError) throw this.firstError;
    const parts = [...this.completed].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    try {
      const reply = await this.options.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.options.bucket,
          Key: this.options.key,
          UploadId: this.uploadId,
          MultipartUpload: { Parts: parts },
        }),
        { abortSignal: this.abortController.signal },
      );
      this.uploaded = {
        bucket: this.options.bucket,
        key: this.options.key,
        versionId: reply.VersionId,
        etag: reply.ETag,
        parts: parts.length,
        bytes: this.bytes,
      };
    } catch (error) {
      throw this.storageError("CompleteMultipartUpload failed", error);
    }
  }

  private async abortUpload(): Promise<void> {
    // Parts still uploading could be stored after an abort: let them finish first (they are never
    // cancelled; only a pending create or complete is). No part starts once aborting is set, but wait until
    // none is in flight rather than for the ones in flight now, so that this holds whatever the order.
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    try {
      await this.options.client.send(
        new AbortMultipartUploadCommand({
          Bucket: this.options.bucket,
          Key: this.options.key,
          UploadId: this.uploadId,
        }),
      );
    } catch (error) {
      throw this.storageError(`AbortMultipartUpload of ${this.uploadId} failed; its parts may remain`, error);
    }
  }

  private storageError(what: string, cause?: unknown) {
    const where = `s3://${this.options.bucket}/${this.options.key}: ${what}`;
    return cause === undefined ? new StorageUnavailableError(where) : storageError(where, cause);
  }
}
