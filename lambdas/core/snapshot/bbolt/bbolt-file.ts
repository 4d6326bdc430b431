// Positioned reads of a bbolt file, page by page, with a small cache of read windows.
// A tree walk asks for the children of one branch page in key order; when it says which pages come
// next (`upcoming`, sorted), pages that lie close together are fetched with one read, so a file
// whose tree is laid out mostly in order is read in large chunks rather than one syscall per page.
import { readSync } from "node:fs";
import { SnapshotCorruptError } from "../../errors.js";
import { hexFlags, pageKind, readPageHeader } from "./page.js";

export interface BboltFileOptions {
  /** Largest window read at once to cover neighbouring pages. */
  maxWindowBytes?: number;
  /** Largest gap between two wanted pages that one read may span (bytes read and thrown away). */
  maxGapBytes?: number;
  /** Bytes of windows kept for reuse. */
  cacheBytes?: number;
  /** Largest page extent (page plus overflow) this reader accepts, to bound memory on a corrupt header. */
  maxPageExtentBytes?: number;
}

interface Window {
  first: number;
  end: number;
  buffer: Buffer;
}

/** Windows kept at most, so that a lookup stays a short scan. */
const maxWindows = 64;

export type ExpectedKind = "tree" | "freelist";

export class BboltFile {
  readonly #fd: number;
  readonly pageSize: number;
  /** Pages [0, pageCount) belong to the database. */
  readonly pageCount: number;
  readonly #maxWindowPages: number;
  readonly #maxGapPages: number;
  readonly #cacheBytes: number;
  readonly maxPageExtentBytes: number;
  #windows: Window[] = [];
  #cachedBytes = 0;
  /** Bytes read from the file, for tests and benchmarks. */
  bytesRead = 0;
  reads = 0;

  constructor(fd: number, pageSize: number, pageCount: number, options: BboltFileOptions = {}) {
    this.#fd = fd;
    this.pageSize = pageSize;
    this.pageCount = pageCount;
    this.#maxWindowPages = Math.max(1, Math.floor((options.maxWindowBytes ?? 4 * 1024 * 1024) / pageSize));
    this.#maxGapPages = Math.max(1, Math.floor((options.maxGapBytes ?? 64 * 1024) / pageSize));
    this.#cacheBytes = options.cacheBytes ?? 32 * 1024 * 1024;
    this.maxPageExtentBytes = options.maxPageExtentBytes ?? 256 * 1024 * 1024;
  }

  /** Reads exactly `length` bytes at `position` into a new buffer. */
  readRange(position: number, length: number): Buffer {
    const buffer = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const got = readSync(this.#fd, buffer, done, length - done, position + done);
      if (got === 0) {
        throw new SnapshotCorruptError(`truncated: the file ends before byte ${position + length}`);
      }
      done += got;
    }
    this.bytesRead += length;
    this.reads++;
    return buffer;
  }

  /**
   * Page `pgid` with its overflow pages, header at offset 0, after checking that its id matches its
   * position, that its flags are the expected kind and that its extent lies inside the database.
   * The caller has checked that `pgid` is in [2, pageCount).
   */
  readPage(pgid: number, expected: ExpectedKind, upcoming?: ArrayLike<number>): Buffer {
    const [window, offset] = this.#firstPage(pgid, upcoming);
    const header = readPageHeader(window, offset);
    if (header.id !== pgid) {
      throw new SnapshotCorruptError(
        `page ${pgid} has id ${header.id}: a page reference is wrong or the page is corrupt`,
      );
    }
    const kind = pageKind(header.flags);
    if (kind === undefined)
      throw new SnapshotCorruptError(`page ${pgid} has invalid flags ${hexFlags(header.flags)}`);
    if (expected === "tree" ? kind !== "branch" && kind !== "leaf" : kind !== "freelist") {
      const wanted = expected === "tree" ? "a branch or leaf page" : "the freelist page";
      throw new SnapshotCorruptError(`page ${pgid} is a ${kind} page where ${wanted} was expected`);
    }
    const extentPages = header.overflow + 1;
    if (pgid + extentPages > this.pageCount) {
      throw new SnapshotCorruptError(
        `page ${pgid} claims ${header.overflow} overflow pages, past the end of the database (${this.pageCount} pages)`,
      );
    }
    const extentBytes = extentPages * this.pageSize;
    if (extentBytes > this.maxPageExtentBytes) {
      throw new SnapshotCorruptError(
        `page ${pgid} claims ${header.overflow} overflow pages (${extentBytes} bytes), more than the ${this.maxPageExtentBytes} this verifier accepts`,
      );
    }
    if (offset + extentBytes <= window.length) return window.subarray(offset, offset + extentBytes);
    return this.readRange(pgid * this.pageSize, extentBytes);
  }

  /** A buffer holding at least the first page of `pgid`, and the page's offset in it. */
  #firstPage(pgid: number, upcoming: ArrayLike<number> | undefined): [Buffer, number] {
    for (let index = this.#windows.length - 1; index >= 0; index--) {
      const window = this.#windows[index] as Window;
      if (pgid >= window.first && pgid < window.end)
        return [window.buffer, (pgid - window.first) * this.pageSize];
    }
    let end = pgid + 1;
    if (upcoming !== undefined) {
      for (let index = firstGreater(upcoming, pgid); index < upcoming.length; index++) {
        const next = upcoming[index] as number;
        if (
          next - (end - 1) > this.#maxGapPages ||
          next + 1 - pgid > this.#maxWindowPages ||
          next >= this.pageCount
        ) {
          break;
        }
        end = next + 1;
      }
    }
    const window: Window = {
      first: pgid,
      end,
      buffer: this.readRange(pgid * this.pageSize, (end - pgid) * this.pageSize),
    };
    this.#windows.push(window);
    this.#cachedBytes += window.buffer.length;
    while (
      this.#windows.length > 1 &&
      (this.#cachedBytes > this.#cacheBytes || this.#windows.length > maxWindows)
    ) {
      const evicted = this.#windows.shift() as Window;
      this.#cachedBytes -= evicted.buffer.length;
    }
    return [window.buffer, 0];
  }
}

/** Index of the first element of the ascending `sorted` that is greater than `value`. */
function firstGreater(sorted: ArrayLike<number>, value: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((sorted[middle] as number) <= value) low = middle + 1;
    else high = middle;
  }
  return low;
}
