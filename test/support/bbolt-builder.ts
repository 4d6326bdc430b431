// Builds small bbolt files in memory, laid out as bbolt lays them out (FACTS §2), so that unit tests
// can check the verifier on every page shape and then damage the result on purpose. Written from the
// format description, independently of the reader under test.
import { createHash } from "node:crypto";

export type BuildEntry =
  | { key: string | Buffer; value: string | Buffer }
  | { key: string | Buffer; bucket: BuildBucket };

export interface BuildBucket {
  entries: BuildEntry[];
  /** Store the bucket inline in its parent's leaf (bbolt does so for small buckets without sub-buckets). */
  inline?: boolean;
}

export interface BuildOptions {
  pageSize?: number;
  /** Top-level buckets, by name. */
  buckets: Array<[string, BuildBucket]>;
  /** At most this many elements per leaf page (to force branch pages on small data). */
  maxLeafElements?: number;
  maxBranchElements?: number;
  /** Unused pages to add; with `persistFreelist` they are listed on a freelist page. */
  freePages?: number;
  persistFreelist?: boolean;
  /** Write entries in the order given instead of sorting them (to build a file with keys out of order). */
  keepOrder?: boolean;
  /** Append the 32-byte sha256 trailer of a snapshot (default true). */
  trailer?: boolean;
  txid?: number;
}

export interface BuiltPage {
  pgid: number;
  kind: "branch" | "leaf" | "freelist";
  /** The bucket whose tree holds the page ("" for the root tree). */
  bucket: string;
  overflow: number;
  count: number;
}

export interface BuiltFile {
  bytes: Buffer;
  pageSize: number;
  pageCount: number;
  rootPgid: number;
  freelistPgid: number | undefined;
  pages: BuiltPage[];
}

const noFreelist = 0xffff_ffff_ffff_ffffn;

interface Node {
  key: Buffer;
  pgid: number;
}

export function buildBboltFile(options: BuildOptions): BuiltFile {
  const pageSize = options.pageSize ?? 4096;
  const maxLeaf = options.maxLeafElements ?? Number.POSITIVE_INFINITY;
  const maxBranch = options.maxBranchElements ?? Number.POSITIVE_INFINITY;
  const images = new Map<number, Buffer>();
  const pages: BuiltPage[] = [];
  let next = 2;

  const allocate = (image: Buffer): number => {
    const pgid = next;
    const extent = Math.max(1, Math.ceil(image.length / pageSize));
    next += extent;
    const padded = Buffer.alloc(extent * pageSize);
    image.copy(padded);
    padded.writeBigUInt64LE(BigInt(pgid), 0);
    padded.writeUInt32LE(extent - 1, 12);
    images.set(pgid, padded);
    return pgid;
  };

  const leafImage = (elements: Array<{ flags: number; key: Buffer; value: Buffer }>): Buffer => {
    const header = 16 + elements.length * 16;
    const size =
      header + elements.reduce((sum, element) => sum + element.key.length + element.value.length, 0);
    const image = Buffer.alloc(size);
    image.writeUInt16LE(0x02, 8);
    image.writeUInt16LE(elements.length, 10);
    let data = header;
    elements.forEach((element, index) => {
      const at = 16 + index * 16;
      image.writeUInt32LE(element.flags, at);
      image.writeUInt32LE(data - at, at + 4);
      image.writeUInt32LE(element.key.length, at + 8);
      image.writeUInt32LE(element.value.length, at + 12);
      element.key.copy(image, data);
      element.value.copy(image, data + element.key.length);
      data += element.key.length + element.value.length;
    });
    return image;
  };

  const branchImage = (children: Node[]): Buffer => {
    const header = 16 + children.length * 16;
    const image = Buffer.alloc(header + children.reduce((sum, child) => sum + child.key.length, 0));
    image.writeUInt16LE(0x01, 8);
    image.writeUInt16LE(children.length, 10);
    let data = header;
    children.forEach((child, index) => {
      const at = 16 + index * 16;
      image.writeUInt32LE(data - at, at);
      image.writeUInt32LE(child.key.length, at + 4);
      image.writeBigUInt64LE(BigInt(child.pgid), at + 8);
      child.key.copy(image, data);
      data += child.key.length;
    });
    return image;
  };

  const bucketValue = (bucket: BuildBucket, name: string): Buffer => {
    const header = Buffer.alloc(16);
    if (bucket.inline) return Buffer.concat([header, leafImage(elementsOf(bucket, name))]);
    header.writeBigUInt64LE(BigInt(writeTree(elementsOf(bucket, name), name)), 0);
    return header;
  };

  const ordered = <T extends { key: Buffer }>(elements: T[]): T[] =>
    options.keepOrder ? elements : [...elements].sort((a, b) => Buffer.compare(a.key, b.key));

  const elementsOf = (bucket: BuildBucket, name: string) =>
    ordered(
      bucket.entries.map((entry) => {
        const key = Buffer.from(entry.key);
        if ("bucket" in entry) {
          return { flags: 1, key, value: bucketValue(entry.bucket, `${name}/${key.toString("latin1")}`) };
        }
        return { flags: 0, key, value: Buffer.from(entry.value) };
      }),
    );

  const writeTree = (
    elements: Array<{ flags: number; key: Buffer; value: Buffer }>,
    bucket: string,
  ): number => {
    let level: Node[] = [];
    let group: typeof elements = [];
    let size = 16;
    const flushLeaf = () => {
      const first = group[0];
      const pgid = allocate(leafImage(group));
      pages.push({
        pgid,
        kind: "leaf",
        bucket,
        overflow: (images.get(pgid)?.length ?? 0) / pageSize - 1,
        count: group.length,
      });
      level.push({ key: first ? first.key : Buffer.alloc(0), pgid });
      group = [];
      size = 16;
    };
    for (const element of elements) {
      const elementSize = 16 + element.key.length + element.value.length;
      if (group.length > 0 && (group.length >= maxLeaf || size + elementSize > pageSize)) flushLeaf();
      group.push(element);
      size += elementSize;
    }
    if (group.length > 0 || level.length === 0) flushLeaf();
    while (level.length > 1) {
      const parents: Node[] = [];
      let children: Node[] = [];
      let branchSize = 16;
      const flushBranch = () => {
        const pgid = allocate(branchImage(children));
        pages.push({ pgid, kind: "branch", bucket, overflow: 0, count: children.length });
        parents.push({ key: (children[0] as Node).key, pgid });
        children = [];
        branchSize = 16;
      };
      // Like bbolt, a branch page keeps at least two children, overflowing if it must.
      for (const child of level) {
        const childSize = 16 + child.key.length;
        if (children.length >= 2 && (children.length >= maxBranch || branchSize + childSize > pageSize))
          flushBranch();
        children.push(child);
        branchSize += childSize;
      }
      flushBranch();
      level = parents;
    }
    return (level[0] as Node).pgid;
  };

  const rootPgid = writeTree(
    ordered(
      options.buckets.map(([name, bucket]) => ({
        flags: 1,
        key: Buffer.from(name),
        value: bucketValue(bucket, name),
      })),
    ),
    "",
  );

  const freeIds: number[] = [];
  for (let index = 0; index < (options.freePages ?? 0); index++) freeIds.push(next++);
  let freelistPgid: number | undefined;
  if (options.persistFreelist) {
    const image = Buffer.alloc(16 + freeIds.length * 8);
    image.writeUInt16LE(0x10, 8);
    image.writeUInt16LE(freeIds.length, 10);
    freeIds.forEach((id, index) => {
      image.writeBigUInt64LE(BigInt(id), 16 + index * 8);
    });
    freelistPgid = allocate(image);
    pages.push({ pgid: freelistPgid, kind: "freelist", bucket: "", overflow: 0, count: freeIds.length });
  }

  const pageCount = next;
  const db = Buffer.alloc(pageCount * pageSize);
  for (const [pgid, image] of images) image.copy(db, pgid * pageSize);
  const txid = BigInt(options.txid ?? 7);
  for (const page of [0, 1]) {
    writeMeta(db, page, pageSize, {
      root: rootPgid,
      freelist: freelistPgid === undefined ? noFreelist : BigInt(freelistPgid),
      pgid: pageCount,
      txid: txid - BigInt(page),
    });
  }
  const bytes =
    options.trailer === false ? db : Buffer.concat([db, createHash("sha256").update(db).digest()]);
  return { bytes, pageSize, pageCount, rootPgid, freelistPgid, pages };
}

export function writeMeta(
  db: Buffer,
  page: number,
  pageSize: number,
  meta: { root: number; freelist: bigint; pgid: number; txid: bigint },
): void {
  const at = page * pageSize;
  db.fill(0, at, at + pageSize);
  db.writeBigUInt64LE(BigInt(page), at);
  db.writeUInt16LE(0x04, at + 8);
  db.writeUInt32LE(0xed0cdaed, at + 16);
  db.writeUInt32LE(2, at + 20);
  db.writeUInt32LE(pageSize, at + 24);
  db.writeBigUInt64LE(BigInt(meta.root), at + 32);
  db.writeBigUInt64LE(meta.freelist, at + 48);
  db.writeBigUInt64LE(BigInt(meta.pgid), at + 56);
  db.writeBigUInt64LE(meta.txid, at + 64);
  resealMeta(db, page, pageSize);
}

/** Recomputes the FNV-1a-64 checksum of meta page `page` after a test changed it. */
export function resealMeta(db: Buffer, page: number, pageSize: number): void {
  const at = page * pageSize;
  let hash = 0xcbf29ce484222325n;
  for (const byte of db.subarray(at + 16, at + 72))
    hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffff_ffff_ffff_ffffn;
  db.writeBigUInt64LE(hash, at + 72);
}

/** Replaces the last 32 bytes with the sha256 of the rest, as if etcd had sent the damaged bytes. */
export function resealTrailer(file: Buffer): Buffer {
  const db = file.subarray(0, file.length - 32);
  return Buffer.concat([db, createHash("sha256").update(db).digest()]);
}

/** mvccpb.KeyValue in protobuf encoding, fields in number order as etcd's gogoproto writes them. */
export function encodeKeyValue(kv: {
  key: string | Buffer;
  createRevision?: number;
  modRevision?: number;
  version?: number;
  value?: string | Buffer;
  lease?: number;
}): Buffer {
  const parts: Buffer[] = [];
  const bytesField = (field: number, data: string | Buffer | undefined) => {
    if (data === undefined || data.length === 0) return;
    const buffer = Buffer.from(data);
    parts.push(Buffer.from([(field << 3) | 2]), varint(buffer.length), buffer);
  };
  const numberField = (field: number, value: number | undefined) => {
    if (!value) return;
    parts.push(Buffer.from([field << 3]), varint(value));
  };
  bytesField(1, kv.key);
  numberField(2, kv.createRevision);
  numberField(3, kv.modRevision);
  numberField(4, kv.version);
  bytesField(5, kv.value);
  numberField(6, kv.lease);
  return Buffer.concat(parts);
}

function varint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** A `key` bucket as etcd writes it for a list of operations: one revision per put or delete. */
export function etcdKeyBucket(operations: Array<["put", string, string] | ["delete", string]>): BuildBucket {
  const entries: BuildEntry[] = operations.map((operation, index) => {
    const main = index + 2;
    const revision = Buffer.alloc(operation[0] === "put" ? 17 : 18);
    revision.writeBigInt64BE(BigInt(main), 0);
    revision[8] = 0x5f;
    if (operation[0] === "delete") revision[17] = 0x74;
    const value =
      operation[0] === "put"
        ? encodeKeyValue({
            key: operation[1],
            createRevision: main,
            modRevision: main,
            version: 1,
            value: operation[2],
          })
        : encodeKeyValue({ key: operation[1] });
    return { key: revision, value };
  });
  return { entries };
}
