// Verifies an etcd snapshot file: the sha256 trailer, the bbolt structure (both meta pages, a full
// tree walk, the freelist when one is persisted), and the figures `etcdctl snapshot status` reports.
//
// Why a stream is staged to disk first: a bbolt tree cannot be walked in one sequential pass (pages
// reference each other in any order), and a ranged GET per page is unrealistic for millions of pages.
// So a stream (e.g. an S3 object) is written to local disk (Lambda ephemeral storage, up to 10 GiB)
// while its sha256 is computed in flight; the staged file is then read with positioned reads and
// always removed. A local file is read in place: one sequential pass for the sha256, then the walk.
// Memory stays bounded by the read windows, one page per tree level, a bitmap of reached pages and
// the set of live user keys (needed to count them).
import { createHash, randomUUID } from "node:crypto";
import { type FileHandle, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { crc32c } from "../checksum/crc32c.js";
import { crc32cCombine } from "../checksum/crc32c-combine.js";
import { InvalidInputError, SnapshotCorruptError, SnapshotStreamInterruptedError } from "../errors.js";
import { BboltFile } from "./bbolt/bbolt-file.js";
import {
  chooseMeta,
  isPlausiblePageSize,
  type Meta,
  metaMagic,
  metaPageBytes,
  metaProblem,
  parseMeta,
} from "./bbolt/meta.js";
import { bucketLeafFlag, type LeafPage, parseFreelistPage, readPageHeader } from "./bbolt/page.js";
import { type BucketVisitor, describeKey, TreeWalker } from "./bbolt/walk-tree.js";
import {
  EtcdBuckets,
  locateUserKey,
  MetaKeys,
  mainRevisionOf,
  parseRevisionKey,
  tombstoneKeyBytes,
} from "./etcd-schema.js";
import { KeyHistoryHash } from "./key-history-hash.js";
import { LiveKeySet } from "./live-key-set.js";
import {
  checkMemberHashes,
  type HashedMember,
  type MemberHashCheck,
  type MemberHashCheckMode,
} from "./member-hash-check.js";
import { hasTrailerSize, snapshotTrailerBytes, TrailerHoldingHash } from "./snapshot-format.js";
import { readFully, WriteBatch } from "./write-fully.js";

export interface SnapshotReport {
  /** Hex sha256 of the database bytes (the file minus the 32-byte trailer). */
  sha256: string;
  /** Whether the file ends with a sha256 trailer (size % 512 === 32), which then matched. */
  hasTrailer: boolean;
  /** CRC-32C as `etcdctl snapshot status` prints it: each bucket's name, then its keys and values. */
  hash: number;
  /** As `etcdctl snapshot status`: the main revision of the last key of bucket `key`. */
  revision: number;
  /** etcd 3.4 `etcdctl snapshot status` semantics: every key/value entry of every bucket. */
  totalKey: number;
  /** Keys alive at the revision (etcd 3.6 `etcdutl` semantics: replay, a tombstone removes the key). */
  liveKeyCount: number;
  /**
   * etcd's HashKV at the snapshot's revision as a member compacted at this snapshot's compactRevision
   * answers it (key-history-hash.ts).
   */
  kvHash: number;
  /** The members' HashKV compared with the snapshot's, when verification was given members. */
  memberHash?: MemberHashCheck;
  /** `tx.Size()`: the chosen meta's pgid times the page size. */
  totalSize: number;
  /** `meta/storageVersion`, written from etcd 3.6. */
  storageVersion?: string;
  /** `meta/finishedCompactRev`, present once etcd has compacted. */
  compactRevision?: number;
  /**
   * `meta/scheduledCompactRev`: a compaction requested but perhaps not finished. A restore starts from
   * max(revision, compactRevision, scheduledCompactRevision) (FACTS §4).
   */
  scheduledCompactRevision?: number;
  pageSize: number;
  pageCount: number;
  fileBytes: number;
}

export interface VerifyOptions {
  /**
   * Compare the snapshot's HashKV with these members' (member-hash-check.ts), once the file is verified:
   * the member it was read from first, then its peers.
   */
  members?: readonly HashedMember[] | undefined;
  /** `report`: most members disagreeing is recorded as mismatched, not thrown (target memberHashCheck). */
  memberHashCheck?: MemberHashCheckMode | undefined;
  /**
   * Refuse a file without a sha256 trailer (default true). `etcdutl snapshot restore` accepts one only
   * with --skip-hash-check; a plain bbolt file (a copied member `db`) needs `requireTrailer: false`.
   */
  requireTrailer?: boolean;
}

export interface VerifyStreamOptions extends VerifyOptions {
  /** Where the stream is staged (default: the OS temporary directory). */
  stagingDir?: string;
  /** Refuse (InvalidInputError) a stream longer than this. */
  maxBytes?: number;
  /** The length the stream must have: more is a SnapshotCorruptError, fewer a SnapshotStreamInterruptedError. */
  expectedBytes?: number;
  /** Told the bytes staged so far after each staging write (about every 4 MiB) and at the end, for progress. */
  onStaged?: (bytes: number) => void;
}

const hashChunkBytes = 8 * 1024 * 1024;
const stagingWriteBytes = 4 * 1024 * 1024;
/** Enough of the file's start to hold both meta pages at the largest accepted page size. */
const headBytes = 2 * 65536;

export async function verifySnapshotFile(path: string, options: VerifyOptions = {}): Promise<SnapshotReport> {
  const handle = await open(path, "r");
  try {
    return await verifyOpenFile(handle, undefined, options);
  } finally {
    await handle.close();
  }
}

/**
 * Stages `source` to a temporary file in `stagingDir`, computing its sha256 in the same pass, then
 * verifies the staged file; the staged file is always removed.
 */
export async function verifySnapshotStream(
  source: Readable,
  options: VerifyStreamOptions = {},
): Promise<SnapshotReport> {
  const stagingDir = options.stagingDir ?? tmpdir();
  const path = join(stagingDir, `etcd-snapshot-${randomUUID()}.db`);
  const handle = await open(path, "wx+", 0o600);
  try {
    const digest = await stageStream(source, handle, options);
    return await verifyOpenFile(handle, digest, options);
  } finally {
    await handle.close().catch(() => undefined);
    await rm(path, { force: true });
  }
}

/** Writes `source` to `handle`, hashing all but the last 32 bytes (the possible trailer) on the way. */
async function stageStream(
  source: Readable,
  handle: FileHandle,
  options: VerifyStreamOptions,
): Promise<string> {
  const hash = new TrailerHoldingHash();
  let total = 0;
  const batch = new WriteBatch(stagingWriteBytes);
  // A failing write (a full staging disk) is the sink's fault, not the stream's: it keeps its own error.
  let writeFailed = false;
  const flushOrFlag = async () => {
    try {
      await batch.writeTo(handle);
    } catch (error) {
      writeFailed = true;
      throw error;
    }
  };

  try {
    for await (const received of source) {
      const chunk: Buffer = typeof received === "string" ? Buffer.from(received) : (received as Buffer);
      total += chunk.length;
      if (options.maxBytes !== undefined && total > options.maxBytes) {
        throw new InvalidInputError(`snapshot stream exceeds the staging limit of ${options.maxBytes} bytes`);
      }
      if (options.expectedBytes !== undefined && total > options.expectedBytes) {
        throw new SnapshotCorruptError(
          `snapshot stream is longer than the expected ${options.expectedBytes} bytes`,
        );
      }
      hash.update(chunk);
      if (batch.add(chunk)) {
        await flushOrFlag();
        options.onStaged?.(total);
      }
    }
  } catch (error) {
    source.destroy();
    if (writeFailed || error instanceof SnapshotCorruptError || error instanceof InvalidInputError)
      throw error;
    throw new SnapshotStreamInterruptedError(
      `snapshot stream failed after ${total} bytes: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  await batch.writeTo(handle);
  options.onStaged?.(total);
  if (options.expectedBytes !== undefined && total < options.expectedBytes) {
    throw new SnapshotStreamInterruptedError(
      `snapshot stream ended after ${total} bytes, expected ${options.expectedBytes}`,
    );
  }
  return (hasTrailerShape(total) ? hash.digestWithoutHeld() : hash.digestAll()).toString("hex");
}

function hasTrailerShape(fileBytes: number): boolean {
  return fileBytes >= 512 + snapshotTrailerBytes && hasTrailerSize(fileBytes);
}

/** Verifies the file behind `handle`; `dbSha256` is the digest of its database bytes when already known. */
async function verifyOpenFile(
  handle: FileHandle,
  dbSha256: string | undefined,
  options: VerifyOptions,
): Promise<SnapshotReport> {
  const fileBytes = (await handle.stat()).size;
  if (fileBytes === 0) throw new SnapshotCorruptError("not a bbolt file: the file is empty");
  const head = Buffer.alloc(Math.min(fileBytes, headBytes));
  await readSnapshotFully(handle, head, 0);

  const withTrailer = hasTrailerShape(fileBytes);
  const dbBytes = withTrailer ? fileBytes - snapshotTrailerBytes : fileBytes;
  const meta = readMetas(head, dbBytes);
  const pageSize = meta.pageSize;
  const totalSize = meta.pgid * pageSize;
  if (dbBytes < totalSize) {
    throw new SnapshotCorruptError(
      `truncated: file has ${dbBytes} bytes, meta says the database spans ${totalSize}`,
    );
  }
  if (!withTrailer && options.requireTrailer !== false) {
    throw new SnapshotCorruptError(
      `no sha256 trailer: the file's ${fileBytes} bytes are not a multiple of 512 plus 32 (etcdutl restores it only with --skip-hash-check)`,
    );
  }

  const sha256 = dbSha256 ?? (await sha256OfRange(handle, dbBytes));
  if (withTrailer) {
    const trailer = Buffer.alloc(snapshotTrailerBytes);
    await readSnapshotFully(handle, trailer, dbBytes);
    if (trailer.toString("hex") !== sha256) {
      throw new SnapshotCorruptError(
        `snapshot trailer mismatch: sha256 of the first ${dbBytes} bytes is ${sha256}, trailer says ${trailer.toString("hex")}`,
      );
    }
  }

  const file = new BboltFile(handle.fd, pageSize, meta.pgid);
  const walker = new TreeWalker(file);
  walker.markReachable(0, 2);
  const figures = walkEtcdDatabase(walker, meta);
  checkFreelist(file, walker, meta);

  const history = figures.history;
  // HashKV at the revision the snapshot restores to, which a compaction may set above the last entry's.
  const hashRevision = Math.max(figures.revision, figures.compactRevision ?? 0, 1);
  const memberHash =
    options.members && options.members.length > 0
      ? await checkMemberHashes(
          { revision: hashRevision, kvHashAt: (compactRevision) => history.hashAt(compactRevision) },
          options.members,
          options.memberHashCheck,
        )
      : undefined;
  return {
    sha256,
    hasTrailer: withTrailer,
    hash: figures.hash,
    revision: figures.revision,
    totalKey: figures.totalKey,
    liveKeyCount: figures.liveKeys.size,
    kvHash: history.hashAt(figures.compactRevision ?? -1),
    totalSize,
    ...(figures.storageVersion !== undefined ? { storageVersion: figures.storageVersion } : {}),
    ...(figures.compactRevision !== undefined ? { compactRevision: figures.compactRevision } : {}),
    ...(figures.scheduledCompactRevision !== undefined
      ? { scheduledCompactRevision: figures.scheduledCompactRevision }
      : {}),
    pageSize,
    pageCount: meta.pgid,
    fileBytes,
    ...(memberHash ? { memberHash } : {}),
  };
}

function readSnapshotFully(handle: FileHandle, buffer: Buffer, position: number): Promise<void> {
  return readFully(
    handle,
    buffer,
    position,
    () => new SnapshotCorruptError(`truncated: the file ends before byte ${position + buffer.length}`),
  );
}

/** sha256 of bytes [0, length), reading the next chunk while hashing the current one. */
async function sha256OfRange(handle: FileHandle, length: number): Promise<string> {
  const hash = createHash("sha256");
  const buffers = [Buffer.allocUnsafe(hashChunkBytes), Buffer.allocUnsafe(hashChunkBytes)];
  const readChunk = async (position: number, buffer: Buffer): Promise<Buffer> => {
    const size = Math.min(hashChunkBytes, length - position);
    const chunk = buffer.subarray(0, size);
    await readSnapshotFully(handle, chunk, position);
    return chunk;
  };
  let position = 0;
  let next = length > 0 ? readChunk(0, buffers[0] as Buffer) : undefined;
  let turn = 0;
  while (next !== undefined) {
    const chunk = await next;
    position += chunk.length;
    turn ^= 1;
    next = position < length ? readChunk(position, buffers[turn] as Buffer) : undefined;
    hash.update(chunk);
  }
  return hash.digest("hex");
}

/** Finds the page size, validates both meta pages and returns the one bbolt would use. */
function readMetas(head: Buffer, dbBytes: number): Meta {
  const metaAt = (offset: number, page: number) => {
    if (offset + metaPageBytes > head.length) return undefined;
    const meta = parseMeta(head, offset, page);
    return { meta, problem: metaProblem(meta, head, offset) };
  };
  const first = metaAt(0, 0);
  let pageSize: number | undefined;
  if (first !== undefined && first.problem === undefined && isPlausiblePageSize(first.meta.pageSize)) {
    pageSize = first.meta.pageSize;
  } else {
    // Page 0 is damaged: look for a valid meta page 1 at each accepted page size.
    for (let candidate = 512; candidate <= 65536; candidate *= 2) {
      const second = metaAt(candidate, 1);
      if (second?.problem === undefined && second?.meta.pageSize === candidate) {
        pageSize = candidate;
        break;
      }
    }
  }
  if (pageSize === undefined) {
    if (first === undefined) throw new SnapshotCorruptError(`not a bbolt file: only ${head.length} bytes`);
    if (first.meta.magic !== metaMagic)
      throw new SnapshotCorruptError("not a bbolt file: bad magic at page 0");
    if (first.problem !== undefined) {
      const second = metaAt(isPlausiblePageSize(first.meta.pageSize) ? first.meta.pageSize : 4096, 1);
      throw new SnapshotCorruptError(
        `meta page 0 is invalid: ${first.problem}; meta page 1 is invalid: ${second?.problem ?? "not found"}`,
      );
    }
    throw new SnapshotCorruptError(`meta page 0 has an unsupported page size ${first.meta.pageSize}`);
  }
  if (dbBytes < 2 * pageSize) {
    throw new SnapshotCorruptError(`truncated: file has ${dbBytes} bytes, less than the two meta pages`);
  }
  const metas = [metaAt(0, 0), metaAt(pageSize, 1)];
  const problems = metas.map((entry, page) =>
    entry === undefined ? undefined : entry.problem && `meta page ${page} is invalid: ${entry.problem}`,
  );
  const invalid = problems.filter((problem) => problem !== undefined);
  // bbolt would fall back to the other meta; in a snapshot both are written together, so either
  // one being invalid means the file is damaged.
  if (invalid.length > 0) throw new SnapshotCorruptError(invalid.join("; "));
  const chosen = chooseMeta(metas.filter((entry) => entry !== undefined));
  if (chosen === undefined) throw new SnapshotCorruptError("no valid meta page");
  for (const entry of metas) {
    if (entry !== undefined && entry.meta.pageSize !== pageSize) {
      throw new SnapshotCorruptError(
        `meta pages disagree on the page size: ${pageSize} and ${entry.meta.pageSize}`,
      );
    }
  }
  if (!(chosen.pgid >= 3)) {
    throw new SnapshotCorruptError(
      `meta page ${chosen.page} says the database has ${chosen.pgid} pages, fewer than 3`,
    );
  }
  if (!(chosen.root >= 2 && chosen.root < chosen.pgid)) {
    throw new SnapshotCorruptError(`root page ${chosen.root} out of range [2, ${chosen.pgid})`);
  }
  return chosen;
}

interface EtcdFigures {
  hash: number;
  revision: number;
  totalKey: number;
  liveKeys: LiveKeySet;
  history: KeyHistoryHash;
  storageVersion: string | undefined;
  compactRevision: number | undefined;
  scheduledCompactRevision: number | undefined;
}

/** Walks the whole database: what `etcdctl snapshot status` prints, the live key count, and the history for HashKV. */
function walkEtcdDatabase(walker: TreeWalker, meta: Meta): EtcdFigures {
  const figures: EtcdFigures = {
    hash: 0,
    revision: 0,
    totalKey: 0,
    liveKeys: new LiveKeySet(),
    history: new KeyHistoryHash(),
    storageVersion: undefined,
    compactRevision: undefined,
    scheduledCompactRevision: undefined,
  };

  const hashLeaf = (leaf: LeafPage) => {
    const { page, count, keyStart, keyEnd, valueEnd, flags } = leaf;
    figures.totalKey += count;
    if (count === 0) return;
    let contiguous = !leaf.hasBuckets;
    for (let index = 1; contiguous && index < count; index++) {
      contiguous = keyStart[index] === valueEnd[index - 1];
    }
    if (contiguous) {
      // bbolt writes each key followed by its value, element after element: one CRC call per page.
      figures.hash = crc32c(page.subarray(keyStart[0], valueEnd[count - 1]), figures.hash);
      return;
    }
    for (let index = 0; index < count; index++) {
      // A sub-bucket entry contributes its name only: bbolt's ForEach gives it a nil value.
      const end = flags[index] === bucketLeafFlag ? keyEnd[index] : valueEnd[index];
      figures.hash = crc32c(page.subarray(keyStart[index], end), figures.hash);
    }
  };

  const userKey = new Int32Array(2);
  const keyBucket: BucketVisitor = {
    visitLeaf(leaf) {
      const { page, count, keyStart, keyEnd, valueEnd, flags } = leaf;
      figures.totalKey += count;
      const liveKeys = figures.liveKeys;
      for (let index = 0; index < count; index++) {
        const start = keyStart[index] as number;
        const end = keyEnd[index] as number;
        const main = mainRevisionOf(page, start, end);
        if (main < 0 || flags[index] === bucketLeafFlag) {
          throw new SnapshotCorruptError(
            `bucket key: entry ${describeKey(page, start, end)} in ${leaf.label} is not a revision key`,
          );
        }
        figures.revision = main;
        if (!locateUserKey(page, end, valueEnd[index] as number, userKey)) {
          throw new SnapshotCorruptError(
            `bucket key: the value of revision ${main} in ${leaf.label} is not a KeyValue with a key`,
          );
        }
        const tombstone = end - start === tombstoneKeyBytes;
        const keyNumber = tombstone
          ? liveKeys.delete(page, userKey[0] as number, userKey[1] as number)
          : liveKeys.add(page, userKey[0] as number, userKey[1] as number);
        // Hashed once, here: the bucket's share of the status hash is joined in when it ends.
        figures.history.record(main, page.subarray(start, valueEnd[index]), keyNumber, tombstone);
      }
    },
  };

  const metaBucket: BucketVisitor = {
    visitLeaf(leaf) {
      hashLeaf(leaf);
      const { page, count, keyStart, keyEnd, valueEnd } = leaf;
      for (let index = 0; index < count; index++) {
        const name = page.toString("latin1", keyStart[index], keyEnd[index]);
        const valueStart = keyEnd[index] as number;
        const end = valueEnd[index] as number;
        if (name === MetaKeys.storageVersion) figures.storageVersion = page.toString("utf8", valueStart, end);
        if (name === MetaKeys.finishedCompactRevision || name === MetaKeys.scheduledCompactRevision) {
          const revision = parseRevisionKey(page, valueStart, end);
          if (revision === undefined) {
            throw new SnapshotCorruptError(
              `bucket meta: ${name} is not a revision (${end - valueStart} bytes)`,
            );
          }
          if (name === MetaKeys.finishedCompactRevision) figures.compactRevision = revision.main;
          else figures.scheduledCompactRevision = revision.main;
        }
      }
    },
  };

  const otherBucket: BucketVisitor = { visitLeaf: hashLeaf };

  // Bucket `key` is hashed by the history (each entry once); its name and entries join the status hash
  // when the walk leaves it, before the next bucket's name.
  let beforeKeyBucket: number | undefined;
  const joinKeyBucket = () => {
    if (beforeKeyBucket === undefined) return;
    const { crc, bytes } = figures.history.bucket;
    figures.hash = crc32cCombine(beforeKeyBucket, crc, bytes);
    beforeKeyBucket = undefined;
  };

  const root: BucketVisitor = {
    visitLeaf(leaf) {
      for (let index = 0; index < leaf.count; index++) {
        if (leaf.flags[index] !== bucketLeafFlag) {
          const name = describeKey(leaf.page, leaf.keyStart[index] as number, leaf.keyEnd[index] as number);
          throw new SnapshotCorruptError(
            `the root bucket holds a plain key ${name} in ${leaf.label}, not a bucket`,
          );
        }
      }
    },
    enterBucket(leaf, index) {
      joinKeyBucket();
      const name = leaf.page.subarray(leaf.keyStart[index], leaf.keyEnd[index]);
      const text = name.toString("latin1");
      if (text === EtcdBuckets.key) {
        beforeKeyBucket = figures.hash;
        return keyBucket;
      }
      figures.hash = crc32c(name, figures.hash);
      if (text === EtcdBuckets.meta) return metaBucket;
      return otherBucket;
    },
  };

  walker.walkBucket({ pgid: meta.root }, root, "(root)");
  joinKeyBucket();
  return figures;
}

/** With a persisted freelist: its page is sound, and every page is either reachable or free, not both. */
function checkFreelist(file: BboltFile, walker: TreeWalker, meta: Meta): void {
  if (meta.freelist === undefined) return;
  const pgid = meta.freelist;
  if (!(pgid >= 2 && pgid < meta.pgid)) {
    throw new SnapshotCorruptError(`freelist page ${pgid} out of range [2, ${meta.pgid})`);
  }
  if (walker.isReachable(pgid))
    throw new SnapshotCorruptError(`page ${pgid} referenced twice (tree and freelist)`);
  const page = file.readPage(pgid, "freelist");
  walker.markReachable(pgid, page.length / file.pageSize);
  const ids = parseFreelistPage(page, readPageHeader(page).count, `freelist page ${pgid}`);
  const free = new Uint8Array(Math.ceil(meta.pgid / 8));
  for (const id of ids) {
    if (!(id >= 2 && id < meta.pgid)) {
      throw new SnapshotCorruptError(
        `freelist page ${pgid} lists page ${id}, out of range [2, ${meta.pgid})`,
      );
    }
    const bit = 1 << (id & 7);
    if (((free[id >>> 3] as number) & bit) !== 0) {
      throw new SnapshotCorruptError(`freelist page ${pgid} lists page ${id} twice`);
    }
    free[id >>> 3] = (free[id >>> 3] as number) | bit;
    if (walker.isReachable(id)) throw new SnapshotCorruptError(`page ${id} is both reachable and free`);
  }
  let leaked = 0;
  let firstLeaked = -1;
  for (let id = 2; id < meta.pgid; id++) {
    if (walker.isReachable(id) || ((free[id >>> 3] as number) & (1 << (id & 7))) !== 0) continue;
    if (leaked === 0) firstLeaked = id;
    leaked++;
  }
  if (leaked > 0) {
    throw new SnapshotCorruptError(
      `${leaked} pages are neither reachable nor free (the first is page ${firstLeaked})`,
    );
  }
}
