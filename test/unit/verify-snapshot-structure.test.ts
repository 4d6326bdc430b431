// The verifier on synthetic bbolt files: every page shape bbolt writes, and each kind of damage,
// with the sha256 trailer recomputed so that only the structure checks can catch it.
import { randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { crc32c } from "../../lambdas/core/checksum/crc32c.js";
import {
  InvalidInputError,
  SnapshotCorruptError,
  SnapshotStreamInterruptedError,
} from "../../lambdas/core/errors.js";
import { BboltFile } from "../../lambdas/core/snapshot/bbolt/bbolt-file.js";
import { encodeRevisionKey } from "../../lambdas/core/snapshot/etcd-schema.js";
import { verifySnapshotFile, verifySnapshotStream } from "../../lambdas/core/snapshot/verify-snapshot.js";
import {
  type BuildBucket,
  type BuildOptions,
  type BuiltFile,
  buildBboltFile,
  etcdKeyBucket,
  resealMeta,
  resealTrailer,
} from "../support/bbolt-builder.js";
import { makeTempDir } from "../support/temp-dir.js";

/** XORs `mask` into byte `offset`: a deliberate bit flip. */
function flipBits(buffer: Buffer, offset: number, mask: number): void {
  buffer.writeUInt8(buffer.readUInt8(offset) ^ mask, offset);
}

let temp: { path: string; remove: () => Promise<void> };
let fileNumber = 0;

beforeAll(async () => {
  temp = await makeTempDir("verify-unit");
});
afterAll(async () => {
  await temp.remove();
});

async function writeTemp(bytes: Buffer): Promise<string> {
  const path = join(temp.path, `file-${fileNumber++}.db`);
  await writeFile(path, bytes);
  return path;
}

/** The hash `etcdctl snapshot status` would print, computed straight from what the builder was given. */
function expectedHash(buckets: Array<[string, BuildBucket]>): number {
  let hash = 0;
  const sorted = <T extends { key: Buffer }>(items: T[]) =>
    [...items].sort((a, b) => Buffer.compare(a.key, b.key));
  for (const { key: name, bucket } of sorted(
    buckets.map(([name, bucket]) => ({ key: Buffer.from(name), bucket })),
  )) {
    hash = crc32c(name, hash);
    for (const entry of sorted(bucket.entries.map((entry) => ({ ...entry, key: Buffer.from(entry.key) })))) {
      hash = crc32c(entry.key, hash);
      if ("value" in entry) hash = crc32c(Buffer.from(entry.value), hash);
    }
  }
  return hash;
}

/**
 * etcd's HashKV at the last revision for a member compacted at `compactRevision`, straight from the
 * operations: every entry above the compaction, and below it only each live key's newest put.
 */
function expectedKvHash(
  history: Array<["put", string, string] | ["delete", string]>,
  compactRevision: number,
): number {
  const entries = etcdKeyBucket(history).entries;
  const newest = new Map<string, number>();
  history.forEach(([, key], index) => {
    newest.set(key, index);
  });
  let bytes = Buffer.from("key");
  history.forEach((operation, index) => {
    const revision = index + 2;
    const keptByCompaction = newest.get(operation[1]) === index && operation[0] === "put";
    if (revision > compactRevision || keptByCompaction) {
      const entry = entries[index] as { key: Buffer; value: Buffer };
      bytes = Buffer.concat([bytes, entry.key, entry.value]);
    }
  });
  return crc32c(bytes, 0);
}

const operations: Array<["put", string, string] | ["delete", string]> = [];
for (let index = 0; index < 150; index++)
  operations.push(["put", `/registry/item-${index % 60}`, `value-${index}`]);
for (let index = 0; index < 20; index++) operations.push(["delete", `/registry/item-${index}`]);
const lastRevision = operations.length + 1;

const etcdLikeBuckets: Array<[string, BuildBucket]> = [
  ["key", etcdKeyBucket(operations)],
  [
    "meta",
    {
      entries: [
        { key: "consistent_index", value: Buffer.from("00000000000000aa", "hex") },
        { key: "finishedCompactRev", value: encodeRevisionKey(40, 0) },
        { key: "scheduledCompactRev", value: encodeRevisionKey(45, 0) },
        { key: "storageVersion", value: "3.6.0" },
      ],
    },
  ],
  ["lease", { entries: [] }],
  ["members", { entries: [{ key: "8e9e05c52164694d", value: '{"id":1}' }] }],
];

function buildEtcdLike(options: Partial<BuildOptions> = {}): BuiltFile {
  return buildBboltFile({ buckets: etcdLikeBuckets, maxLeafElements: 4, maxBranchElements: 4, ...options });
}

function expectCorrupt(promise: Promise<unknown>, message: RegExp) {
  return expect(promise).rejects.toSatisfy((error: unknown) => {
    if (!(error instanceof SnapshotCorruptError))
      throw new Error(`expected SnapshotCorruptError, got ${error}`);
    if (!message.test(error.message)) throw new Error(`message "${error.message}" does not match ${message}`);
    if (error.message.includes("\n")) throw new Error("message spans more than one line");
    return true;
  });
}

/** The offset of element `index` of the page `pgid` in the file. */
const elementAt = (built: BuiltFile, pgid: number, index: number) => pgid * built.pageSize + 16 + index * 16;

describe("verifySnapshotFile on well-formed files", () => {
  it("computes hash, revision, key counts and size over a multi-level tree", async () => {
    const built = buildEtcdLike();
    expect(
      built.pages.filter((page) => page.kind === "branch" && page.bucket === "key").length,
    ).toBeGreaterThan(3);
    const report = await verifySnapshotFile(await writeTemp(built.bytes));
    expect(report).toEqual({
      sha256: built.bytes.subarray(built.bytes.length - 32).toString("hex"),
      hasTrailer: true,
      hash: expectedHash(etcdLikeBuckets),
      revision: lastRevision,
      totalKey: operations.length + 4 + 1,
      liveKeyCount: 40,
      kvHash: expectedKvHash(operations, 40),
      totalSize: built.pageCount * 4096,
      storageVersion: "3.6.0",
      compactRevision: 40,
      scheduledCompactRevision: 45,
      pageSize: 4096,
      pageCount: built.pageCount,
      fileBytes: built.bytes.length,
    });
    // A member's HashKV is compared for whatever compact revision it reports.
    for (const compactRevision of [-1, 40, 100]) {
      const asked: number[] = [];
      const member = {
        description: "member m1",
        hashKV: async (revision: number) => {
          asked.push(revision);
          return { hash: expectedKvHash(operations, compactRevision), compactRevision };
        },
      };
      const compared = await verifySnapshotFile(await writeTemp(built.bytes), { members: [member] });
      expect(compared.memberHash).toEqual({
        outcome: "matched",
        revision: lastRevision,
        compactRevision,
        hash: expectedKvHash(operations, compactRevision),
        agreeing: ["member m1"],
      });
      expect(asked).toEqual([lastRevision]);
    }
    expect(expectedKvHash(operations, 100)).not.toBe(expectedKvHash(operations, 40));
    const wrong = {
      description: "member m1",
      hashKV: async () => ({ hash: expectedKvHash(operations, 40), compactRevision: 100 }),
    };
    await expectCorrupt(
      verifySnapshotFile(await writeTemp(built.bytes), { members: [wrong] }),
      new RegExp(`^the snapshot does not hold what member m1 holds at revision ${lastRevision}: `),
    );
  });

  it("reads values spread over overflow pages and keys of every size, with other page sizes", async () => {
    const buckets: Array<[string, BuildBucket]> = [
      [
        "data",
        {
          entries: [
            { key: "big", value: randomBytes(50_000) },
            { key: "huge", value: randomBytes(300_000) },
            { key: "k".repeat(3000), value: "long key" },
            { key: "small", value: "x" },
          ],
        },
      ],
    ];
    for (const pageSize of [1024, 4096, 16384]) {
      const built = buildBboltFile({ buckets, pageSize });
      expect(built.pages.some((page) => page.overflow > 10)).toBe(true);
      const report = await verifySnapshotFile(await writeTemp(built.bytes));
      expect(report.hash).toBe(expectedHash(buckets));
      expect(report.totalKey).toBe(4);
      expect(report.pageSize).toBe(pageSize);
    }
  });

  it("walks inline and nested buckets, hashing a nested bucket's name but not its contents", async () => {
    const nested: BuildBucket = { entries: [{ key: "n1", value: "v1" }] };
    const buckets: Array<[string, BuildBucket]> = [
      ["inline", { inline: true, entries: [{ key: "a", value: "1" }] }],
      [
        "outer",
        {
          entries: [
            { key: "child-inline", bucket: { inline: true, entries: [{ key: "c", value: "3" }] } },
            { key: "child-paged", bucket: nested },
            { key: "plain", value: "p" },
          ],
        },
      ],
    ];
    const built = buildBboltFile({ buckets });
    const report = await verifySnapshotFile(await writeTemp(built.bytes));
    let hash = 0;
    for (const part of ["inline", "a", "1", "outer", "child-inline", "child-paged", "plain", "p"]) {
      hash = crc32c(Buffer.from(part), hash);
    }
    expect(report.hash).toBe(hash);
    expect(report.totalKey).toBe(4);
    expect(report.revision).toBe(0);
  });

  it("accepts a persisted freelist that accounts for every unreachable page", async () => {
    const built = buildEtcdLike({ freePages: 5, persistFreelist: true });
    const report = await verifySnapshotFile(await writeTemp(built.bytes));
    expect(report.pageCount).toBe(built.pageCount);
  });

  it("accepts a file without trailer only when told to, and then hashes all of it", async () => {
    const built = buildEtcdLike({ trailer: false });
    const path = await writeTemp(built.bytes);
    await expectCorrupt(verifySnapshotFile(path), /^no sha256 trailer: the file's \d+ bytes/);
    const report = await verifySnapshotFile(path, { requireTrailer: false });
    expect(report.hasTrailer).toBe(false);
    expect(report.sha256).toBe(buildEtcdLike().bytes.subarray(-32).toString("hex"));
  });

  it("reads neighbouring pages of one branch in a few large reads", async () => {
    const built = buildBboltFile({
      buckets: [["key", etcdKeyBucket(operations)]],
      maxLeafElements: 2,
      maxBranchElements: 50,
    });
    const branch = built.pages.find((page) => page.kind === "branch" && page.count === 50);
    expect(branch).toBeDefined();
    const path = await writeTemp(built.bytes);
    const fd = openSync(path, "r");
    try {
      const file = new BboltFile(fd, 4096, built.pageCount);
      const page = file.readPage(branch?.pgid as number, "tree");
      const children = Array.from({ length: 50 }, (_, index) =>
        Number(page.readBigUInt64LE(16 + index * 16 + 8)),
      );
      const sorted = Float64Array.from(children).sort();
      for (const child of children) expect(file.readPage(child, "tree", sorted).readUInt16LE(8)).toBe(0x02);
      expect(file.reads).toBeLessThanOrEqual(3);
    } finally {
      closeSync(fd);
    }
  });
});

describe("verifySnapshotFile on damaged files", () => {
  const damage = async (built: BuiltFile, change: (db: Buffer) => void): Promise<string> => {
    const bytes = Buffer.from(built.bytes);
    change(bytes);
    return writeTemp(resealTrailer(bytes));
  };
  const keyBranch = (built: BuiltFile) => {
    const branch = built.pages.find(
      (page) => page.kind === "branch" && page.bucket === "key" && page.count >= 3,
    );
    if (!branch) throw new Error("no branch page in the test file");
    return branch.pgid;
  };
  const keyLeaf = (built: BuiltFile) => {
    const leaf = built.pages.find((page) => page.kind === "leaf" && page.bucket === "key" && page.count >= 2);
    if (!leaf) throw new Error("no leaf page in the test file");
    return leaf.pgid;
  };

  it("refuses an empty file and random bytes as not bbolt", async () => {
    await expectCorrupt(
      verifySnapshotFile(await writeTemp(Buffer.alloc(0))),
      /^not a bbolt file: the file is empty$/,
    );
    await expectCorrupt(
      verifySnapshotFile(await writeTemp(randomBytes(100_000))),
      /^not a bbolt file: bad magic at page 0$/,
    );
    await expectCorrupt(verifySnapshotFile(await writeTemp(randomBytes(40))), /^not a bbolt file/);
  });

  it("detects a flipped byte through the trailer", async () => {
    const built = buildEtcdLike();
    const bytes = Buffer.from(built.bytes);
    flipBits(bytes, Math.floor(bytes.length / 2), 0x40);
    await expectCorrupt(
      verifySnapshotFile(await writeTemp(bytes)),
      new RegExp(
        `^snapshot trailer mismatch: sha256 of the first ${bytes.length - 32} bytes is [0-9a-f]{64}, trailer says [0-9a-f]{64}$`,
      ),
    );
  });

  it("detects a truncated file", async () => {
    const built = buildEtcdLike();
    const cut = built.bytes.subarray(0, 10 * 4096);
    await expectCorrupt(
      verifySnapshotFile(await writeTemp(cut)),
      new RegExp(
        `^truncated: file has ${10 * 4096} bytes, meta says the database spans ${built.pageCount * 4096}$`,
      ),
    );
  });

  it("detects an invalid meta page, naming which and why", async () => {
    const built = buildEtcdLike();
    const path0 = await damage(built, (db) => {
      flipBits(db, 40, 1);
    });
    await expectCorrupt(
      verifySnapshotFile(path0),
      /^meta page 0 is invalid: checksum mismatch: stored 0x[0-9a-f]+, computed 0x[0-9a-f]+$/,
    );
    const path1 = await damage(built, (db) => {
      db.writeUInt32LE(3, 4096 + 20);
    });
    await expectCorrupt(verifySnapshotFile(path1), /^meta page 1 is invalid: version 3, expected 2$/);
    const both = await damage(built, (db) => {
      flipBits(db, 40, 1);
      flipBits(db, 4096 + 40, 1);
    });
    await expectCorrupt(
      verifySnapshotFile(both),
      /^meta page 0 is invalid: checksum mismatch.*; meta page 1 is invalid/,
    );
  });

  it("detects a page referenced twice", async () => {
    const built = buildEtcdLike();
    const branch = keyBranch(built);
    const path = await damage(built, (db) => {
      const first = db.readBigUInt64LE(elementAt(built, branch, 0) + 8);
      db.writeBigUInt64LE(first, elementAt(built, branch, 1) + 8);
    });
    await expectCorrupt(verifySnapshotFile(path), /^page \d+ referenced twice$/);
  });

  it("detects a reference cycle as a page referenced twice", async () => {
    const built = buildEtcdLike();
    const branch = keyBranch(built);
    const path = await damage(built, (db) => {
      db.writeBigUInt64LE(BigInt(branch), elementAt(built, branch, 0) + 8);
    });
    await expectCorrupt(verifySnapshotFile(path), new RegExp(`^page ${branch} referenced twice$`));
  });

  it("detects a child page out of range", async () => {
    const built = buildEtcdLike();
    const branch = keyBranch(built);
    const path = await damage(built, (db) => {
      db.writeBigUInt64LE(900n, elementAt(built, branch, 1) + 8);
    });
    await expectCorrupt(
      verifySnapshotFile(path),
      new RegExp(`^page 900 out of range \\[2, ${built.pageCount}\\), referenced by page ${branch}$`),
    );
  });

  it("detects a page whose id does not match its position, and invalid page flags", async () => {
    const built = buildEtcdLike();
    const leaf = keyLeaf(built);
    const moved = await damage(built, (db) => {
      db.writeBigUInt64LE(BigInt(leaf + 1), leaf * 4096);
    });
    await expectCorrupt(verifySnapshotFile(moved), new RegExp(`^page ${leaf} has id ${leaf + 1}`));
    const flagged = await damage(built, (db) => {
      db.writeUInt16LE(0x03, leaf * 4096 + 8);
    });
    await expectCorrupt(verifySnapshotFile(flagged), new RegExp(`^page ${leaf} has invalid flags 0x03$`));
    const meta = await damage(built, (db) => {
      db.writeUInt16LE(0x04, leaf * 4096 + 8);
    });
    await expectCorrupt(
      verifySnapshotFile(meta),
      new RegExp(`^page ${leaf} is a meta page where a branch or leaf`),
    );
  });

  it("detects overflow past the end of the database", async () => {
    const built = buildEtcdLike();
    const leaf = keyLeaf(built);
    const path = await damage(built, (db) => {
      db.writeUInt32LE(100_000, leaf * 4096 + 12);
    });
    await expectCorrupt(
      verifySnapshotFile(path),
      new RegExp(`^page ${leaf} claims 100000 overflow pages, past the end`),
    );
  });

  it("detects keys out of order inside a page", async () => {
    const built = buildBboltFile({
      keepOrder: true,
      buckets: [
        [
          "data",
          {
            entries: [
              { key: "b", value: "1" },
              { key: "a", value: "2" },
            ],
          },
        ],
      ],
    });
    await expectCorrupt(
      verifySnapshotFile(await writeTemp(built.bytes)),
      /^keys out of order in page \d+: element 1 is not greater than element 0$/,
    );
  });

  it("detects keys out of order across pages and outside the parent's range", async () => {
    const built = buildEtcdLike();
    const branch = keyBranch(built);
    // Raise the separator of child 1 above the first key of that child.
    const path = await damage(built, (db) => {
      const element = elementAt(built, branch, 1);
      const keyAt = element + db.readUInt32LE(element);
      db[keyAt + 16] = 0xff;
    });
    await expectCorrupt(
      verifySnapshotFile(path),
      /^keys out of order in page \d+: element 0 is below the separator key in its parent \(page \d+\)$/,
    );
    const swapped = buildBboltFile({
      keepOrder: true,
      maxLeafElements: 1,
      buckets: [
        [
          "data",
          {
            entries: [
              { key: "b", value: "1" },
              { key: "a", value: "2" },
              { key: "c", value: "3" },
            ],
          },
        ],
      ],
    });
    await expectCorrupt(
      verifySnapshotFile(await writeTemp(swapped.bytes)),
      /^keys out of order in page \d+: branch element 1/,
    );
  });

  it("detects a persisted freelist that misses a page, lists a reachable one, or lists one twice", async () => {
    const built = buildEtcdLike({ freePages: 3, persistFreelist: true });
    const freelist = built.freelistPgid as number;
    const leaked = await damage(built, (db) => {
      db.writeUInt16LE(2, freelist * 4096 + 10);
    });
    await expectCorrupt(
      verifySnapshotFile(leaked),
      /^1 pages are neither reachable nor free \(the first is page \d+\)$/,
    );
    const leaf = keyLeaf(built);
    const reachable = await damage(built, (db) => {
      db.writeBigUInt64LE(BigInt(leaf), freelist * 4096 + 16);
    });
    await expectCorrupt(
      verifySnapshotFile(reachable),
      new RegExp(`^page ${leaf} is both reachable and free$`),
    );
    const twice = await damage(built, (db) => {
      db.writeBigUInt64LE(db.readBigUInt64LE(freelist * 4096 + 16), freelist * 4096 + 24);
    });
    await expectCorrupt(verifySnapshotFile(twice), /^freelist page \d+ lists page \d+ twice$/);
  });

  it("detects a root bucket holding a plain key and a `key` bucket entry that is no revision", async () => {
    const built = buildBboltFile({ buckets: [["data", { entries: [] }]] });
    const root = await damage(built, (db) => {
      db.writeUInt32LE(0, elementAt(built, built.rootPgid, 0));
    });
    await expectCorrupt(
      verifySnapshotFile(root),
      /^the root bucket holds a plain key "data" in page \d+, not a bucket$/,
    );
    const notRevision = buildBboltFile({ buckets: [["key", { entries: [{ key: "plain", value: "x" }] }]] });
    await expectCorrupt(
      verifySnapshotFile(await writeTemp(notRevision.bytes)),
      /^bucket key: entry "plain" in page \d+ is not a revision key$/,
    );
  });

  it("rechecks a meta page that was resealed with a root out of range", async () => {
    const built = buildEtcdLike();
    const path = await damage(built, (db) => {
      for (const page of [0, 1]) {
        db.writeBigUInt64LE(BigInt(built.pageCount + 5), page * 4096 + 32);
        resealMeta(db, page, 4096);
      }
    });
    await expectCorrupt(verifySnapshotFile(path), /^root page \d+ out of range \[2, \d+\)$/);
  });
});

describe("verifySnapshotStream", () => {
  const chunksOf = (bytes: Buffer): Buffer[] => {
    const chunks: Buffer[] = [];
    const sizes = [1, 5, 31, 32, 33, 4096, 70_000];
    for (let offset = 0, turn = 0; offset < bytes.length; turn++) {
      const size = sizes[turn % sizes.length] as number;
      chunks.push(bytes.subarray(offset, offset + size));
      offset += size;
    }
    return chunks;
  };

  it("gives the same report as the file, whatever the chunking, and removes its staged file", async () => {
    const staging = await makeTempDir("stage");
    try {
      const built = buildEtcdLike();
      const fromFile = await verifySnapshotFile(await writeTemp(built.bytes));
      const staged: number[] = [];
      const fromStream = await verifySnapshotStream(Readable.from(chunksOf(built.bytes)), {
        stagingDir: staging.path,
        onStaged: (bytes) => staged.push(bytes),
      });
      expect(fromStream).toEqual(fromFile);
      // Progress: rising, and the whole file at the end.
      expect(staged.at(-1)).toBe(built.bytes.length);
      expect(staged).toEqual([...staged].sort((a, b) => a - b));
      const unsealed = buildEtcdLike({ trailer: false });
      const noTrailer = await verifySnapshotStream(Readable.from(chunksOf(unsealed.bytes)), {
        stagingDir: staging.path,
        requireTrailer: false,
      });
      expect(noTrailer.sha256).toBe(fromFile.sha256);
      expect(await readdir(staging.path)).toEqual([]);
    } finally {
      await staging.remove();
    }
  });

  it("refuses a stream above maxBytes or not of the expected length, and a failing stream, leaving nothing staged", async () => {
    const staging = await makeTempDir("stage");
    try {
      const bytes = buildEtcdLike().bytes;
      await expect(
        verifySnapshotStream(Readable.from(chunksOf(bytes)), { stagingDir: staging.path, maxBytes: 10_000 }),
      ).rejects.toThrow(InvalidInputError);
      await expect(
        verifySnapshotStream(Readable.from(chunksOf(bytes)), {
          stagingDir: staging.path,
          expectedBytes: bytes.length + 1,
        }),
      ).rejects.toThrow(SnapshotStreamInterruptedError);
      await expectCorrupt(
        verifySnapshotStream(Readable.from(chunksOf(bytes)), {
          stagingDir: staging.path,
          expectedBytes: bytes.length - 1,
        }),
        /longer than the expected/,
      );
      const failing = new Readable({
        read() {
          this.push(bytes.subarray(0, 8192));
          this.destroy(new Error("connection reset"));
        },
      });
      await expect(verifySnapshotStream(failing, { stagingDir: staging.path })).rejects.toThrow(
        /snapshot stream failed after \d+ bytes: connection reset/,
      );
      const damaged = Buffer.from(bytes);
      flipBits(damaged, 9000, 1);
      await expectCorrupt(
        verifySnapshotStream(Readable.from([damaged]), { stagingDir: staging.path }),
        /trailer mismatch/,
      );
      expect(await readdir(staging.path)).toEqual([]);
    } finally {
      await staging.remove();
    }
  });
});
