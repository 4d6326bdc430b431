// Depth-first walk of bbolt B+trees with the integrity checks of bbolt's tx_check (FACTS §2): every
// page id in range and matching its position, no page reached twice (which also rules out cycles),
// valid page kinds, and keys strictly ascending within a page, across pages, and inside the range
// that the parent branch page gives each child. Inline buckets and overflow pages are handled.
// Leaves reach a visitor in key order; the walk never skips a sub-bucket, whatever the visitor does.
import { SnapshotCorruptError } from "../../errors.js";
import type { BboltFile } from "./bbolt-file.js";
import {
  bucketHeaderSize,
  bucketLeafFlag,
  compareBytes,
  hexFlags,
  type LeafPage,
  PageFlags,
  pageHeaderSize,
  parseBranchPage,
  parseLeafPage,
  readPageHeader,
  readU64,
} from "./page.js";

export interface BucketVisitor {
  /** A leaf page (or the page image of an inline bucket), in key order, after its checks. */
  visitLeaf(leaf: LeafPage): void;
  /**
   * The visitor for the sub-bucket at element `index` of `leaf`, which is walked right after
   * `visitLeaf(leaf)`, in element order. Undefined: walk it for its structure only.
   */
  enterBucket?(leaf: LeafPage, index: number): BucketVisitor | undefined;
}

/** Where a bucket's tree starts: a root page, or a page image stored inline in the parent's value. */
export type BucketRoot = { pgid: number } | { inlinePage: Buffer };

interface KeyRef {
  buffer: Buffer;
  start: number;
  end: number;
}

/** Per-bucket walk state: the last key seen, for the strict order across pages. */
interface BucketState {
  lastKey: KeyRef | undefined;
  lastKeyPage: string;
}

const structureOnly: BucketVisitor = { visitLeaf() {} };

export class TreeWalker {
  readonly #file: BboltFile;
  readonly #reachable: Uint8Array;
  readonly #maxDepth: number;
  /** Pages reached so far, overflow pages included. */
  reachablePages = 0;

  constructor(file: BboltFile, options: { maxDepth?: number } = {}) {
    this.#file = file;
    this.#reachable = new Uint8Array(Math.ceil(file.pageCount / 8));
    this.#maxDepth = options.maxDepth ?? 64;
  }

  isReachable(pgid: number): boolean {
    return ((this.#reachable[pgid >>> 3] as number) & (1 << (pgid & 7))) !== 0;
  }

  /** Marks pages [pgid, pgid + pages) as reached, failing on any page reached before. */
  markReachable(pgid: number, pages: number): void {
    for (let page = pgid; page < pgid + pages; page++) {
      const index = page >>> 3;
      const bit = 1 << (page & 7);
      const byte = this.#reachable[index] as number;
      if ((byte & bit) !== 0) {
        const what = page === pgid ? "" : ` (overflow of page ${pgid})`;
        throw new SnapshotCorruptError(`page ${page}${what} referenced twice`);
      }
      this.#reachable[index] = byte | bit;
    }
    this.reachablePages += pages;
  }

  /** Walks the bucket whose tree starts at `root`; `name` describes it in messages. */
  walkBucket(root: BucketRoot, visitor: BucketVisitor, name: string, depth = 0): void {
    const state: BucketState = { lastKey: undefined, lastKeyPage: "" };
    if ("pgid" in root) {
      this.#walkPage(root.pgid, undefined, undefined, `bucket ${name}`, undefined, depth, state, visitor);
      return;
    }
    const page = root.inlinePage;
    const label = `the inline page of bucket ${name}`;
    if (page.length < pageHeaderSize) {
      throw new SnapshotCorruptError(`${label} is ${page.length} bytes, shorter than a page header`);
    }
    const header = readPageHeader(page);
    if (header.flags !== PageFlags.leaf) {
      throw new SnapshotCorruptError(`${label} has flags ${hexFlags(header.flags)}, expected a leaf`);
    }
    const leaf = parseLeafPage(page, header.count, undefined, label);
    this.#visitLeaf(leaf, undefined, undefined, "", depth, state, visitor);
  }

  #walkPage(
    pgid: number,
    lower: KeyRef | undefined,
    upper: KeyRef | undefined,
    referrer: string,
    upcoming: ArrayLike<number> | undefined,
    depth: number,
    state: BucketState,
    visitor: BucketVisitor,
  ): void {
    const file = this.#file;
    if (!(pgid >= 2 && pgid < file.pageCount)) {
      throw new SnapshotCorruptError(
        `page ${pgid} out of range [2, ${file.pageCount}), referenced by ${referrer}`,
      );
    }
    if (depth > this.#maxDepth) {
      throw new SnapshotCorruptError(`tree deeper than ${this.#maxDepth} levels at page ${pgid}`);
    }
    if (this.isReachable(pgid)) throw new SnapshotCorruptError(`page ${pgid} referenced twice`);
    const page = file.readPage(pgid, "tree", upcoming);
    this.markReachable(pgid, page.length / file.pageSize);
    const header = readPageHeader(page);
    const label = `page ${pgid}`;

    if (header.flags === PageFlags.leaf) {
      const leaf = parseLeafPage(page, header.count, pgid, label);
      this.#visitLeaf(leaf, lower, upper, referrer, depth, state, visitor);
      return;
    }

    const branch = parseBranchPage(page, header.count, label);
    const keys: KeyRef[] = new Array(branch.count);
    for (let index = 0; index < branch.count; index++) {
      const key = {
        buffer: page,
        start: branch.keyStart[index] as number,
        end: branch.keyEnd[index] as number,
      };
      if (index > 0 && compareKeys(key, keys[index - 1] as KeyRef) <= 0) {
        throw new SnapshotCorruptError(
          `keys out of order in page ${pgid}: branch element ${index} is not greater than element ${index - 1}`,
        );
      }
      if (index === 0 && lower !== undefined && compareKeys(key, lower) < 0) {
        throw new SnapshotCorruptError(
          `keys out of order in page ${pgid}: branch element 0 is below the separator key in its parent (${referrer})`,
        );
      }
      if (upper !== undefined && compareKeys(key, upper) >= 0) {
        throw new SnapshotCorruptError(
          `keys out of order in page ${pgid}: branch element ${index} is not below the next separator key in its parent (${referrer})`,
        );
      }
      keys[index] = key;
    }
    const sorted = Float64Array.from(branch.children).sort();
    for (let index = 0; index < branch.count; index++) {
      this.#walkPage(
        branch.children[index] as number,
        keys[index],
        index + 1 < branch.count ? keys[index + 1] : upper,
        `page ${pgid}`,
        sorted,
        depth + 1,
        state,
        visitor,
      );
    }
  }

  #visitLeaf(
    leaf: LeafPage,
    lower: KeyRef | undefined,
    upper: KeyRef | undefined,
    referrer: string,
    depth: number,
    state: BucketState,
    visitor: BucketVisitor,
  ): void {
    const { page, count, keyStart, keyEnd, label } = leaf;
    if (count > 0) {
      const first = { buffer: page, start: keyStart[0] as number, end: keyEnd[0] as number };
      if (lower !== undefined && compareKeys(first, lower) < 0) {
        throw new SnapshotCorruptError(
          `keys out of order in ${label}: element 0 is below the separator key in its parent (${referrer})`,
        );
      }
      if (state.lastKey !== undefined && compareKeys(first, state.lastKey) <= 0) {
        throw new SnapshotCorruptError(
          `keys out of order in ${label}: element 0 is not greater than the last key of ${state.lastKeyPage}`,
        );
      }
      for (let index = 1; index < count; index++) {
        const order = compareBytes(
          page,
          keyStart[index] as number,
          keyEnd[index] as number,
          page,
          keyStart[index - 1] as number,
          keyEnd[index - 1] as number,
        );
        if (order <= 0) {
          throw new SnapshotCorruptError(
            `keys out of order in ${label}: element ${index} is not greater than element ${index - 1}`,
          );
        }
      }
      const last = { buffer: page, start: keyStart[count - 1] as number, end: keyEnd[count - 1] as number };
      if (upper !== undefined && compareKeys(last, upper) >= 0) {
        throw new SnapshotCorruptError(
          `keys out of order in ${label}: element ${count - 1} is not below the next separator key in its parent (${referrer})`,
        );
      }
      state.lastKey = last;
      state.lastKeyPage = label;
    }

    visitor.visitLeaf(leaf);
    if (!leaf.hasBuckets) return;
    for (let index = 0; index < count; index++) {
      if (leaf.flags[index] !== bucketLeafFlag) continue;
      const child = visitor.enterBucket?.(leaf, index) ?? structureOnly;
      const name = describeKey(page, keyStart[index] as number, keyEnd[index] as number);
      this.walkBucket(bucketRootOf(leaf, index, name), child, name, depth + 1);
    }
  }
}

/** Where the sub-bucket stored at element `index` of `leaf` starts. */
export function bucketRootOf(leaf: LeafPage, index: number, name: string): BucketRoot {
  const start = leaf.keyEnd[index] as number;
  const end = leaf.valueEnd[index] as number;
  if (end - start < bucketHeaderSize) {
    throw new SnapshotCorruptError(
      `${leaf.label}: bucket ${name} has a ${end - start}-byte value, shorter than a bucket header`,
    );
  }
  const root = readU64(leaf.page, start);
  if (root !== 0) return { pgid: root };
  return { inlinePage: leaf.page.subarray(start + bucketHeaderSize, end) };
}

function compareKeys(a: KeyRef, b: KeyRef): number {
  return compareBytes(a.buffer, a.start, a.end, b.buffer, b.start, b.end);
}

/** A key for messages: printable ASCII as is, anything else in hex, cut at 64 characters. */
export function describeKey(buffer: Buffer, start: number, end: number): string {
  const bytes = buffer.subarray(start, Math.min(end, start + 48));
  const printable = bytes.every((byte) => byte >= 0x20 && byte < 0x7f);
  const text = printable ? JSON.stringify(bytes.toString("latin1")) : `0x${bytes.toString("hex")}`;
  return end - start > bytes.length ? `${text}…` : text;
}
