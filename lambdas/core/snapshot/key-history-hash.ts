// etcd's HashKV of a snapshot, computed from the file: the proof that the copy is faithful to what the
// member holds (DESIGN.md §4). A member answers HashKV(revision) with a CRC-32C of the bucket name `key`
// and then of each revision entry (key, then value) of bucket `key` in order, up to `revision`, skipping
// the entries at or below its compact revision that a compaction at `revision` would remove — every entry
// that is not the newest of its user key, and tombstones (server/storage/mvcc/hash.go,
// keyIndex.keep). With `revision` the snapshot's own, the entries it keeps at or below the compact
// revision are those of the keys alive in the snapshot, each at its newest revision.
//
// The member's compact revision is known only from its answer, and whether an early entry counts only
// once the bucket has been read to its end. So the CRC of everything read so far is kept after each entry
// (25 bytes per revision, in typed arrays), and the hash for a compact revision is put together from the
// runs of entries it keeps: a run's own CRC follows from the CRCs before and after it (crc32c-combine.ts),
// so the work grows with the entries left out, not with all of them, and no byte is read twice.
import { crc32c } from "../checksum/crc32c.js";
import { crc32cCombine, crc32cShift } from "../checksum/crc32c-combine.js";

const initialCapacity = 1024;
const bucketName = Buffer.from("key", "latin1");

export class KeyHistoryHash {
  /** CRC-32C of `key` and every entry up to and including this one. */
  #crcThrough = new Uint32Array(initialCapacity);
  /** Bytes of the entries up to and including this one (the bucket name not counted). */
  #bytesThrough = new Float64Array(initialCapacity);
  #main = new Float64Array(initialCapacity);
  #key = new Int32Array(initialCapacity);
  #tombstone = new Uint8Array(initialCapacity);
  #entries = 0;
  #crc = crc32c(bucketName, 0);
  #bytes = 0;
  /** Per user key (numbered as LiveKeySet numbers them): its newest entry so far. */
  #newestEntry = new Int32Array(initialCapacity);

  /** Reads the next entry of bucket `key` (its key and value bytes), in bucket order (ascending revision). */
  record(main: number, entry: Uint8Array, key: number, tombstone: boolean): void {
    if (this.#entries === this.#main.length) this.#grow();
    if (key >= this.#newestEntry.length) {
      const newest = new Int32Array(Math.max(this.#newestEntry.length * 2, key + 1));
      newest.set(this.#newestEntry);
      this.#newestEntry = newest;
    }
    const index = this.#entries++;
    this.#crc = crc32c(entry, this.#crc);
    this.#bytes += entry.length;
    this.#crcThrough[index] = this.#crc;
    this.#bytesThrough[index] = this.#bytes;
    this.#main[index] = main;
    this.#key[index] = key;
    this.#tombstone[index] = tombstone ? 1 : 0;
    this.#newestEntry[key] = index;
  }

  /** CRC-32C and length of the bucket's name and all its entries: its share of the status hash. */
  get bucket(): { crc: number; bytes: number } {
    return { crc: this.#crc, bytes: bucketName.length + this.#bytes };
  }

  /**
   * What a member whose compact revision is `compactRevision` (-1 when it never compacted) answers to
   * HashKV at the snapshot's revision: the same as HashKV of this snapshot restored, once compacted there.
   */
  hashAt(compactRevision: number): number {
    const count = this.#entries;
    const kept = (index: number) =>
      this.#newestEntry[this.#key[index] as number] === index && this.#tombstone[index] === 0;
    let anyKept = false;
    for (let index = 0; index < count && !anyKept; index++) anyKept = kept(index);
    // etcd skips compactable entries only when a compaction would keep anything at all.
    const left = (index: number) =>
      anyKept && (this.#main[index] as number) <= compactRevision && !kept(index);

    let hash = crc32c(bucketName, 0);
    let runStart = 0;
    for (let index = 0; index <= count; index++) {
      if (index < count && !left(index)) continue;
      if (index > runStart) hash = this.#appendRun(hash, runStart, index - 1);
      runStart = index + 1;
    }
    return hash;
  }

  /** `hash` followed by the entries first…last, from the CRCs through `first - 1` and through `last`. */
  #appendRun(hash: number, first: number, last: number): number {
    // The first run, from the bucket's start, is what was read: its CRC through `last` is the answer.
    if (first === 0) return this.#crcThrough[last] as number;
    const crcBefore = this.#crcThrough[first - 1] as number;
    const bytesBefore = this.#bytesThrough[first - 1] as number;
    const length = (this.#bytesThrough[last] as number) - bytesBefore;
    // crc(A‖B) = shift(crc(A), |B|) ⊕ crc(B), so crc(B) = crc(A‖B) ⊕ shift(crc(A), |B|).
    const runCrc = ((this.#crcThrough[last] as number) ^ crc32cShift(crcBefore, length)) >>> 0;
    return crc32cCombine(hash, runCrc, length);
  }

  #grow(): void {
    const capacity = this.#main.length * 2;
    const grow = <T extends Float64Array | Uint32Array | Int32Array | Uint8Array>(from: T, to: T): T => {
      to.set(from);
      return to;
    };
    this.#crcThrough = grow(this.#crcThrough, new Uint32Array(capacity));
    this.#bytesThrough = grow(this.#bytesThrough, new Float64Array(capacity));
    this.#main = grow(this.#main, new Float64Array(capacity));
    this.#key = grow(this.#key, new Int32Array(capacity));
    this.#tombstone = grow(this.#tombstone, new Uint8Array(capacity));
  }
}
