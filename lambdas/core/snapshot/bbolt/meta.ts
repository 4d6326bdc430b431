// The two bbolt meta pages (FACTS §2): parsing, validation in bbolt's order (magic, version,
// checksum), and the choice of the one that describes the database.
import { PageFlags, pageHeaderSize, readPageHeader, readU64 } from "./page.js";

export const metaMagic = 0xed0cdaed;
export const metaVersion = 2;
/** The freelist pgid of a database that does not persist its freelist (etcd on Linux). */
export const noFreelist = 0xffff_ffff_ffff_ffffn;

/** Bytes 16..72 of a meta page are covered by the checksum stored at 72. */
const checksummedStart = pageHeaderSize;
const checksumOffset = pageHeaderSize + 56;
/** Bytes a meta page needs: its header and the meta body up to and including the checksum. */
export const metaPageBytes = checksumOffset + 8;

export interface Meta {
  /** The page the meta was read from (0 or 1). */
  page: number;
  pageId: number;
  pageFlags: number;
  magic: number;
  version: number;
  pageSize: number;
  flags: number;
  root: number;
  rootSequence: bigint;
  /** undefined when the freelist is not persisted. */
  freelist: number | undefined;
  /** High-water mark: the database spans pages [0, pgid). */
  pgid: number;
  txid: bigint;
  checksum: bigint;
}

/** Reads the meta body of the page that starts at `offset`; `buffer` must hold `metaPageBytes` from there. */
export function parseMeta(buffer: Buffer, offset: number, page: number): Meta {
  const header = readPageHeader(buffer, offset);
  const body = offset + pageHeaderSize;
  const freelist = buffer.readBigUInt64LE(body + 32);
  return {
    page,
    pageId: header.id,
    pageFlags: header.flags,
    magic: buffer.readUInt32LE(body),
    version: buffer.readUInt32LE(body + 4),
    pageSize: buffer.readUInt32LE(body + 8),
    flags: buffer.readUInt32LE(body + 12),
    root: readU64(buffer, body + 16),
    rootSequence: buffer.readBigUInt64LE(body + 24),
    freelist: freelist === noFreelist ? undefined : Number(freelist),
    pgid: readU64(buffer, body + 40),
    txid: buffer.readBigUInt64LE(body + 48),
    checksum: buffer.readBigUInt64LE(offset + checksumOffset),
  };
}

const fnvOffsetBasis = 0xcbf29ce484222325n;
const fnvPrime = 0x100000001b3n;
const mask64 = 0xffff_ffff_ffff_ffffn;

/** FNV-1a, 64 bits, over `data` (bbolt's meta checksum). */
export function fnv1a64(data: Uint8Array): bigint {
  let hash = fnvOffsetBasis;
  for (const byte of data) hash = ((hash ^ BigInt(byte)) * fnvPrime) & mask64;
  return hash;
}

/** The checksum bbolt stores for the meta page that starts at `offset`. */
export function metaChecksum(buffer: Buffer, offset: number): bigint {
  return fnv1a64(buffer.subarray(offset + checksummedStart, offset + checksumOffset));
}

/**
 * Why a meta page is invalid, or undefined when it is valid. bbolt checks magic, then version, then the
 * checksum; the page header's id and flags are checked too, since a snapshot writes both.
 */
export function metaProblem(meta: Meta, buffer: Buffer, offset: number): string | undefined {
  if (meta.magic !== metaMagic) return `bad magic 0x${meta.magic.toString(16).padStart(8, "0")}`;
  if (meta.version !== metaVersion) return `version ${meta.version}, expected ${metaVersion}`;
  const computed = metaChecksum(buffer, offset);
  if (computed !== meta.checksum) {
    return `checksum mismatch: stored 0x${meta.checksum.toString(16)}, computed 0x${computed.toString(16)}`;
  }
  if (meta.pageFlags !== PageFlags.meta) return `page flags 0x${meta.pageFlags.toString(16)}, expected 0x04`;
  if (meta.pageId !== meta.page) return `page id ${meta.pageId}, expected ${meta.page}`;
  return undefined;
}

/** bbolt's choice (db.go `meta()`): the valid meta with the higher txid, otherwise the other valid one. */
export function chooseMeta(
  metas: ReadonlyArray<{ meta: Meta; problem: string | undefined }>,
): Meta | undefined {
  const valid = metas.filter((entry) => entry.problem === undefined).map((entry) => entry.meta);
  let best: Meta | undefined;
  for (const meta of valid) if (best === undefined || meta.txid > best.txid) best = meta;
  return best;
}

/** Whether `size` is a page size this verifier accepts: a power of two from 512 bytes to 64 KiB. */
export function isPlausiblePageSize(size: number): boolean {
  return size >= 512 && size <= 65536 && (size & (size - 1)) === 0;
}
