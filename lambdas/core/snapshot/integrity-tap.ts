// A pass-through that proves a snapshot stream whole while it flows: it counts the bytes, hashes all but
// the last 32 with sha256, and at the end compares that digest with etcd's trailer. Any source (gRPC,
// exec, a file) goes through it; a mismatch fails the stream, and with it the upload.
import { Transform, type TransformCallback } from "node:stream";
import { SnapshotCorruptError } from "../errors.js";
import { hasTrailerSize, snapshotTrailerBytes, TrailerHoldingHash } from "./snapshot-format.js";

export interface IntegrityResult {
  /** Bytes of the whole stream, trailer included: the object's size. */
  bytes: number;
  /** Hex sha256 of the database bytes, which equals the trailer. */
  sha256: string;
}

export interface IntegrityTapOptions {
  /** Database bytes the source announced (trailer excluded), checked at the end when known. */
  expectedDatabaseBytes?: () => number | undefined;
  /** Called with the running byte count as data flows. */
  onProgress?: (bytes: number) => void;
}

export class IntegrityTap extends Transform {
  private readonly hash = new TrailerHoldingHash();
  private bytes = 0;
  private outcome: IntegrityResult | undefined;

  constructor(private readonly options: IntegrityTapOptions = {}) {
    super();
  }

  /** The verified figures; available once the stream has finished without error. */
  get result(): IntegrityResult {
    if (!this.outcome) throw new Error("the integrity tap has not finished");
    return this.outcome;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    this.options.onProgress?.(this.bytes);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    callback(this.check());
  }

  private check(): SnapshotCorruptError | null {
    if (!hasTrailerSize(this.bytes)) {
      return new SnapshotCorruptError(
        `snapshot of ${this.bytes} bytes is truncated or has no sha256 trailer (size % 512 is ${this.bytes % 512}, expected ${snapshotTrailerBytes})`,
      );
    }
    const expected = this.options.expectedDatabaseBytes?.();
    if (expected !== undefined && expected + snapshotTrailerBytes !== this.bytes) {
      return new SnapshotCorruptError(
        `snapshot has ${this.bytes} bytes but etcd announced ${expected} + ${snapshotTrailerBytes}-byte trailer`,
      );
    }
    const digest = this.hash.digestWithoutHeld();
    const trailer = this.hash.heldBytes;
    if (!digest.equals(trailer)) {
      return new SnapshotCorruptError(
        `snapshot sha256 mismatch: the database hashes to ${digest.toString("hex")}, its trailer says ${trailer.toString("hex")}`,
      );
    }
    this.outcome = { bytes: this.bytes, sha256: digest.toString("hex") };
    return null;
  }
}
