// An exact set of byte-string keys for counting live etcd keys while replaying the `key` bucket.
// A JavaScript Set of strings costs a string and a hash-table slot per key (about 1.5–2 µs per insert
// and ~100 bytes per key here); this one keeps the key bytes in one growing arena and its index in
// typed arrays, so a database of millions of keys is counted without millions of objects. Keys are
// never removed: a deleted key is marked dead and revived by a later put.

import { compareBytes } from "./bbolt/page.js";

const initialCapacity = 1024;

export class LiveKeySet {
  #arena = Buffer.allocUnsafe(64 * 1024);
  #arenaUsed = 0;
  #entryStart = new Float64Array(initialCapacity);
  #entryLength = new Uint32Array(initialCapacity);
  #entryHash = new Int32Array(initialCapacity);
  #entryLive = new Uint8Array(initialCapacity);
  #entries = 0;
  /** Open addressing, linear probing: entry index + 1, or 0 for an empty slot. */
  #table = new Int32Array(initialCapacity * 2);
  #live = 0;

  /** Keys currently alive. */
  get size(): number {
    return this.#live;
  }

  /** Keys ever added, alive or not. */
  get distinctKeys(): number {
    return this.#entries;
  }

  /** Marks the key at [start, end) of `buffer` alive; returns the key's number (0, 1, … in first-seen order). */
  add(buffer: Buffer, start: number, end: number): number {
    const entry = this.#find(buffer, start, end, true);
    if (this.#entryLive[entry] === 0) {
      this.#entryLive[entry] = 1;
      this.#live++;
    }
    return entry;
  }

  /** Marks the key at [start, end) of `buffer` dead (known from now on); returns the key's number. */
  delete(buffer: Buffer, start: number, end: number): number {
    const entry = this.#find(buffer, start, end, true);
    if (this.#entryLive[entry] === 1) {
      this.#entryLive[entry] = 0;
      this.#live--;
    }
    return entry;
  }

  has(buffer: Buffer, start: number, end: number): boolean {
    const entry = this.#find(buffer, start, end, false);
    return entry >= 0 && this.#entryLive[entry] === 1;
  }

  /** The entry index of the key, inserting it (dead) when asked; -1 when absent and not inserted. */
  #find(buffer: Buffer, start: number, end: number, insert: boolean): number {
    const hash = hashBytes(buffer, start, end);
    const length = end - start;
    const table = this.#table;
    const mask = table.length - 1;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const stored = table[slot] as number;
      if (stored === 0) {
        if (!insert) return -1;
        const entry = this.#append(buffer, start, end, hash);
        table[slot] = entry + 1;
        if (this.#entries * 2 > table.length) this.#grow();
        return entry;
      }
      const entry = stored - 1;
      if (this.#entryHash[entry] === hash && this.#entryLength[entry] === length) {
        const at = this.#entryStart[entry] as number;
        if (compareBytes(buffer, start, end, this.#arena, at, at + length) === 0) return entry;
      }
    }
  }

  #append(buffer: Buffer, start: number, end: number, hash: number): number {
    const length = end - start;
    if (this.#arenaUsed + length > this.#arena.length) {
      const arena = Buffer.allocUnsafe(Math.max(this.#arena.length * 2, this.#arenaUsed + length));
      this.#arena.copy(arena, 0, 0, this.#arenaUsed);
      this.#arena = arena;
    }
    const arena = this.#arena;
    const used = this.#arenaUsed;
    if (length < 256)
      for (let index = 0; index < length; index++) arena[used + index] = buffer[start + index] as number;
    else buffer.copy(arena, used, start, end);
    if (this.#entries === this.#entryHash.length) {
      const capacity = this.#entries * 2;
      this.#entryStart = grow(this.#entryStart, new Float64Array(capacity));
      this.#entryLength = grow(this.#entryLength, new Uint32Array(capacity));
      this.#entryHash = grow(this.#entryHash, new Int32Array(capacity));
      this.#entryLive = grow(this.#entryLive, new Uint8Array(capacity));
    }
    const entry = this.#entries++;
    this.#entryStart[entry] = this.#arenaUsed;
    this.#entryLength[entry] = length;
    this.#entryHash[entry] = hash;
    this.#arenaUsed += length;
    return entry;
  }

  #grow(): void {
    const table = new Int32Array(this.#table.length * 2);
    const mask = table.length - 1;
    for (let entry = 0; entry < this.#entries; entry++) {
      let slot = (this.#entryHash[entry] as number) & mask;
      while (table[slot] !== 0) slot = (slot + 1) & mask;
      table[slot] = entry + 1;
    }
    this.#table = table;
  }
}

function grow<T extends Float64Array | Uint32Array | Int32Array | Uint8Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

/** FNV-1a (32 bits) over the bytes, with a final mix so that the low bits index the table well. */
function hashBytes(buffer: Buffer, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let index = start; index < end; index++) {
    hash = Math.imul(hash ^ (buffer[index] as number), 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  return hash;
}
