// etcd's HashKV of a snapshot, computed from the file: the proof that the copy is faithful to what the
// member holds (DESIGN.md §4). A member answers HashKV(revision) with a CRC-32C of the bucket name `key`
// and then of each revision entry (key, then value) of bucket `key` in order, up to `revision`, skipping
// the entries at or below its compact revision that a compaction at `revision` would remove — every entry
// that is not the newest of its user key, and tombstones (server/storage/mvcc/hash.go,
// keyIndex.keep). With `revision` the snapshot's own, the entries it keeps at or below the compact
// revision are those of the keys alive in the snapshot, each at its newest revision.
//
// The member's compact revision is known only from its answer, and whether an early entry counts only
// once the bucket has been read to its end; so each entry's CRC and length are kept (21 bytes per revision,
// in typed arrays) and joined at the end with crc32cCombine, without the bytes.
import { crc32c } from "../checksum/crc32c.js";
import { crc32cCombine } from "../checksum/crc32c-combine.js";

const initialCapacity = 1024;
const bucketNameCrc = crc32c(Buffer.from("key", "latin1"), 0);

export class KeyHistoryHash {
  #main = new Float64Array(initialCapacity);
  #crc = new Uint32Array(initialCapacity);
  #length = new Uint32Array(initialCapacity);
  #key = new Int32Array(initialCapacity);
  #tombstone = new Uint8Array(initialCapacity);
  #entries = 0;
  /** Per user key (numbered as LiveKeySet numbers them): its newest entry so far. */
  #newestEntry = new Int32Array(initialCapacity);

  /** Notes the next entry of bucket `key`, in bucket order (ascending revision). */
  record(main: number, entry: Buffer, key: number, tombstone: boolean): void {
    if (this.#entries === this.#main.length) this.#grow();
    if (key >= this.#newestEntry.length) {
      const newest = new Int32Array(Math.max(this.#newestEntry.length * 2, key + 1));
      newest.set(this.#newestEntry);
      this.#newestEntry = newest;
    }
    const index = this.#entries++;
    this.#main[index] = main;
    this.#crc[index] = crc32c(entry, 0);
    this.#length[index] = entry.length;
    this.#key[index] = key;
    this.#tombstone[index] = tombstone ? 1 : 0;
    this.#newestEntry[key] = index;
  }

  /** Revision entries recorded. */
  get entries(): number {
    return this.#entries;
  }

  /**
   * What a member whose compact revision is `compactRevision` (-1 when it never compacted) answers to
   * HashKV at the snapshot's revision: the same as HashKV of this snapshot restored, once compacted there.
   */
  hashAt(compactRevision: number): number {
    const count = this.#entries;
    const kept = new Uint8Array(count);
    let anyKept = false;
    for (let index = 0; index < count; index++) {
      const isNewest = this.#newestEntry[this.#key[index] as number] === index;
      if (isNewest && this.#tombstone[index] === 0) {
        kept[index] = 1;
        anyKept = true;
      }
    }
    let hash = bucketNameCrc;
    for (let index = 0; index < count; index++) {
      // etcd skips compactable entries only when a compaction would keep anything at all.
      if ((this.#main[index] as number) <= compactRevision && anyKept && kept[index] === 0) continue;
      hash = crc32cCombine(hash, this.#crc[index] as number, this.#length[index] as number);
    }
    return hash;
  }

  #grow(): void {
    const capacity = this.#main.length * 2;
    const grow = <T extends Float64Array | Uint32Array | Int32Array | Uint8Array>(from: T, to: T): T => {
      to.set(from);
      return to;
    };
    this.#main = grow(this.#main, new Float64Array(capacity));
    this.#crc = grow(this.#crc, new Uint32Array(capacity));
    this.#length = grow(this.#length, new Uint32Array(capacity));
    this.#key = grow(this.#key, new Int32Array(capacity));
    this.#tombstone = grow(this.#tombstone, new Uint8Array(capacity));
  }
}
