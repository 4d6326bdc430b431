// The one fact about a snapshot's shape every reader and writer of it relies on: etcd appends the
// sha256 of the database as a 32-byte trailer, and a bbolt database is whole 512-byte pages, so a
// snapshot's size is 32 more than a multiple of 512.
import { createHash } from "node:crypto";

export const snapshotTrailerBytes = 32;

/** Whether a file of this size can be a database followed by its trailer. */
export function hasTrailerSize(bytes: number): boolean {
  return bytes % 512 === snapshotTrailerBytes;
}

/**
 * sha256 of a stream's bytes but the last 32 it has seen, which it holds aside: when the stream ends
 * they are the trailer to compare with, or (for a file without one) bytes still to hash.
 */
export class TrailerHoldingHash {
  private readonly hash = createHash("sha256");
  private held: Buffer = Buffer.alloc(0);

  update(chunk: Buffer): void {
    if (chunk.length >= snapshotTrailerBytes) {
      if (this.held.length > 0) this.hash.update(this.held);
      this.hash.update(chunk.subarray(0, chunk.length - snapshotTrailerBytes));
      this.held = Buffer.from(chunk.subarray(chunk.length - snapshotTrailerBytes));
      return;
    }
    const joined = Buffer.concat([this.held, chunk]);
    const overflow = Math.max(0, joined.length - snapshotTrailerBytes);
    if (overflow > 0) this.hash.update(joined.subarray(0, overflow));
    this.held = joined.subarray(overflow);
  }

  /** The last (up to) 32 bytes seen: the trailer, if the stream has one. */
  get heldBytes(): Buffer {
    return this.held;
  }

  /** The digest of every byte but the held ones (the database, when they are the trailer). Ends the hash. */
  digestWithoutHeld(): Buffer {
    return this.hash.digest();
  }

  /** The digest of every byte seen (a file without a trailer). Ends the hash. */
  digestAll(): Buffer {
    this.hash.update(this.held);
    return this.hash.digest();
  }
}
