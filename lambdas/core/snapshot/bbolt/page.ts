// The bbolt page layout (FACTS §2): a 16-byte header, then branch or leaf elements of 16 bytes each,
// whose keys and values are addressed relative to the element itself. Integers are little-endian.
import { SnapshotCorruptError } from "../../errors.js";

export const pageHeaderSize = 16;
export const branchElementSize = 16;
export const leafElementSize = 16;
export const bucketHeaderSize = 16;

export const PageFlags = {
  branch: 0x01,
  leaf: 0x02,
  meta: 0x04,
  freelist: 0x10,
} as const;

/** Leaf element flag: the value is a bucket header (and, for an inline bucket, a page image). */
export const bucketLeafFlag = 0x01;

/** A freelist page whose count field holds this value stores the real count in its first u64. */
export const freelistCountOverflow = 0xffff;

export interface PageHeader {
  id: number;
  flags: number;
  count: number;
  overflow: number;
}

/**
 * A little-endian u64 as a number. Values above 2^53 lose precision, which is harmless here: every
 * such value is far outside any page range and is rejected as such.
 */
export function readU64(buffer: Uint8Array, offset: number): number {
  const view = buffer as Buffer;
  return view.readUInt32LE(offset) + view.readUInt32LE(offset + 4) * 2 ** 32;
}

/**
 * Byte-wise comparison of [aStart, aEnd) of `a` with [bStart, bEnd) of `b`: negative, 0 or positive.
 * A plain loop: for the short keys of etcd it is several times cheaper than Buffer#compare with
 * offsets, whose argument checks dominate.
 */
export function compareBytes(
  a: Uint8Array,
  aStart: number,
  aEnd: number,
  b: Uint8Array,
  bStart: number,
  bEnd: number,
): number {
  const aLength = aEnd - aStart;
  const bLength = bEnd - bStart;
  const length = Math.min(aLength, bLength);
  for (let index = 0; index < length; index++) {
    const difference = (a[aStart + index] as number) - (b[bStart + index] as number);
    if (difference !== 0) return difference;
  }
  return aLength - bLength;
}

export function readPageHeader(buffer: Buffer, offset = 0): PageHeader {
  return {
    id: readU64(buffer, offset),
    flags: buffer.readUInt16LE(offset + 8),
    count: buffer.readUInt16LE(offset + 10),
    overflow: buffer.readUInt32LE(offset + 12),
  };
}

/** The page kind for a flags field, or undefined when it is not exactly one known flag. */
export function pageKind(flags: number): "branch" | "leaf" | "meta" | "freelist" | undefined {
  switch (flags) {
    case PageFlags.branch:
      return "branch";
    case PageFlags.leaf:
      return "leaf";
    case PageFlags.meta:
      return "meta";
    case PageFlags.freelist:
      return "freelist";
    default:
      return undefined;
  }
}

/** How a page is named in messages: "page 12", or "the inline page of bucket \"name\"". */
export type PageLabel = string;

export function hexFlags(flags: number): string {
  return `0x${flags.toString(16).padStart(2, "0")}`;
}

/** One branch page, parsed and bounds-checked: child page ids and the byte range of each key. */
export interface BranchPage {
  count: number;
  children: number[];
  /** keyStart[i], keyEnd[i]: offsets of key i inside `page`. */
  keyStart: Int32Array;
  keyEnd: Int32Array;
}

/** Parses the elements of a branch page that starts at offset 0 of `page` (its whole extent). */
export function parseBranchPage(page: Buffer, count: number, label: PageLabel): BranchPage {
  checkElementTable(page, count, branchElementSize, label);
  const children: number[] = new Array(count);
  const keyStart = new Int32Array(count);
  const keyEnd = new Int32Array(count);
  for (let index = 0; index < count; index++) {
    const element = pageHeaderSize + index * branchElementSize;
    const start = element + page.readUInt32LE(element);
    const end = start + page.readUInt32LE(element + 4);
    if (end > page.length) {
      throw new SnapshotCorruptError(
        `${label}: key of branch element ${index} runs past the end of the page (${end} > ${page.length} bytes)`,
      );
    }
    if (end === start) throw new SnapshotCorruptError(`${label}: branch element ${index} has an empty key`);
    keyStart[index] = start;
    keyEnd[index] = end;
    children[index] = readU64(page, element + 8);
  }
  return { count, children, keyStart, keyEnd };
}

/** One leaf page (or inline bucket page), parsed and bounds-checked. Values follow their keys. */
export interface LeafPage {
  /** The buffer holding the page, header at offset 0. */
  page: Buffer;
  /** The page id, or undefined for the page image of an inline bucket. */
  pgid: number | undefined;
  label: PageLabel;
  count: number;
  keyStart: Int32Array;
  /** End of the key, which is also where the value starts. */
  keyEnd: Int32Array;
  valueEnd: Int32Array;
  flags: Int32Array;
  /** Whether any element is a sub-bucket. */
  hasBuckets: boolean;
}

export function parseLeafPage(
  page: Buffer,
  count: number,
  pgid: number | undefined,
  label: PageLabel,
): LeafPage {
  checkElementTable(page, count, leafElementSize, label);
  const keyStart = new Int32Array(count);
  const keyEnd = new Int32Array(count);
  const valueEnd = new Int32Array(count);
  const flags = new Int32Array(count);
  let hasBuckets = false;
  for (let index = 0; index < count; index++) {
    const element = pageHeaderSize + index * leafElementSize;
    const elementFlags = page.readUInt32LE(element);
    const start = element + page.readUInt32LE(element + 4);
    const keyLength = page.readUInt32LE(element + 8);
    const valueLength = page.readUInt32LE(element + 12);
    const end = start + keyLength + valueLength;
    if (end > page.length) {
      throw new SnapshotCorruptError(
        `${label}: leaf element ${index} runs past the end of the page (${end} > ${page.length} bytes)`,
      );
    }
    if (keyLength === 0) throw new SnapshotCorruptError(`${label}: leaf element ${index} has an empty key`);
    if ((elementFlags & ~bucketLeafFlag) !== 0) {
      throw new SnapshotCorruptError(
        `${label}: leaf element ${index} has unknown flags ${hexFlags(elementFlags)}`,
      );
    }
    if (elementFlags === bucketLeafFlag) hasBuckets = true;
    keyStart[index] = start;
    keyEnd[index] = start + keyLength;
    valueEnd[index] = end;
    flags[index] = elementFlags;
  }
  return { page, pgid, label, count, keyStart, keyEnd, valueEnd, flags, hasBuckets };
}

function checkElementTable(page: Buffer, count: number, elementSize: number, label: PageLabel): void {
  const end = pageHeaderSize + count * elementSize;
  if (end > page.length) {
    throw new SnapshotCorruptError(
      `${label}: ${count} elements need ${end} bytes, more than the page's ${page.length}`,
    );
  }
}

/** The ids a freelist page lists (FACTS §2), bounds-checked against the page's extent. */
export function parseFreelistPage(page: Buffer, count: number, label: PageLabel): number[] {
  let first = pageHeaderSize;
  let total = count;
  if (count === freelistCountOverflow) {
    if (page.length < pageHeaderSize + 8) throw new SnapshotCorruptError(`${label} is too short`);
    total = readU64(page, pageHeaderSize);
    first += 8;
  }
  if (first + total * 8 > page.length) {
    throw new SnapshotCorruptError(
      `${label} lists ${total} ids, more than its ${page.length} bytes can hold`,
    );
  }
  const ids: number[] = new Array(total);
  for (let index = 0; index < total; index++) ids[index] = readU64(page, first + index * 8);
  return ids;
}
