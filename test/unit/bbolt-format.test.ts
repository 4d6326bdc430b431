import { describe, expect, it } from "vitest";
import { SnapshotCorruptError } from "../../lambdas/core/errors.js";
import {
  chooseMeta,
  fnv1a64,
  type Meta,
  metaProblem,
  noFreelist,
  parseMeta,
} from "../../lambdas/core/snapshot/bbolt/meta.js";
import {
  pageKind,
  parseBranchPage,
  parseFreelistPage,
  parseLeafPage,
  readPageHeader,
  readU64,
} from "../../lambdas/core/snapshot/bbolt/page.js";

/** XORs `mask` into byte `offset`: a deliberate bit flip. */
function flipBits(buffer: Buffer, offset: number, mask: number): void {
  buffer.writeUInt8(buffer.readUInt8(offset) ^ mask, offset);
}

// Meta page 0 of a snapshot taken from the local etcd 3.4 (`etcdctl snapshot save`): written by Go's bbolt.
const etcdMetaPage0 = Buffer.from(
  "00000000000000000400000000000000" +
    "edda0ced02000000001000000000000002000000000000000000000000000000" +
    "ffffffffffffffff0500000000000000" +
    "0700000000000000e3e1c83539a45fa0",
  "hex",
);

function metaOf(fields: Partial<Meta>): { meta: Meta; problem: string | undefined } {
  const meta: Meta = {
    page: 0,
    pageId: 0,
    pageFlags: 4,
    magic: 0xed0cdaed,
    version: 2,
    pageSize: 4096,
    flags: 0,
    root: 2,
    rootSequence: 0n,
    freelist: undefined,
    pgid: 5,
    txid: 7n,
    checksum: 0n,
    ...fields,
  };
  return { meta, problem: undefined };
}

describe("FNV-1a 64", () => {
  it("matches the published test vectors", () => {
    expect(fnv1a64(Buffer.alloc(0))).toBe(0xcbf29ce484222325n);
    expect(fnv1a64(Buffer.from("a"))).toBe(0xaf63dc4c8601ec8cn);
    expect(fnv1a64(Buffer.from("foobar"))).toBe(0x85944171f73967e8n);
  });
});

describe("meta page", () => {
  it("parses a meta page written by etcd's bbolt and finds its checksum valid", () => {
    expect(etcdMetaPage0.length).toBe(80);
    const meta = parseMeta(etcdMetaPage0, 0, 0);
    expect(meta).toMatchObject({ magic: 0xed0cdaed, version: 2, pageSize: 4096, root: 2, pgid: 5, txid: 7n });
    expect(meta.freelist).toBeUndefined();
    expect(meta.checksum).toBe(0xa05fa43935c8e1e3n);
    expect(metaProblem(meta, etcdMetaPage0, 0)).toBeUndefined();
  });

  it("names the first problem in bbolt's order: magic, then version, then checksum", () => {
    const badMagic = Buffer.from(etcdMetaPage0);
    badMagic[16] = 0;
    badMagic[20] = 3;
    expect(metaProblem(parseMeta(badMagic, 0, 0), badMagic, 0)).toMatch(/^bad magic/);

    const badVersion = Buffer.from(etcdMetaPage0);
    badVersion[20] = 3;
    expect(metaProblem(parseMeta(badVersion, 0, 0), badVersion, 0)).toBe("version 3, expected 2");

    const badChecksum = Buffer.from(etcdMetaPage0);
    flipBits(badChecksum, 56, 1); // the pgid: covered by the checksum
    expect(metaProblem(parseMeta(badChecksum, 0, 0), badChecksum, 0)).toMatch(/^checksum mismatch/);
  });

  it("reads a persisted freelist pgid and the 'no freelist' marker", () => {
    const withFreelist = Buffer.from(etcdMetaPage0);
    withFreelist.writeBigUInt64LE(9n, 48);
    expect(parseMeta(withFreelist, 0, 0).freelist).toBe(9);
    expect(noFreelist).toBe(0xffffffffffffffffn);
  });

  it("chooses the valid meta with the higher txid, else the other valid one", () => {
    const older = metaOf({ page: 0, txid: 6n });
    const newer = metaOf({ page: 1, txid: 7n });
    expect(chooseMeta([older, newer])?.page).toBe(1);
    expect(chooseMeta([{ ...newer, problem: "checksum mismatch" }, older])?.page).toBe(0);
    expect(chooseMeta([metaOf({ page: 0, txid: 7n }), metaOf({ page: 1, txid: 7n })])?.page).toBe(0);
    expect(
      chooseMeta([
        { ...older, problem: "x" },
        { ...newer, problem: "y" },
      ]),
    ).toBeUndefined();
  });
});

describe("pages", () => {
  const leaf = (elements: Array<[string, string, number?]>): Buffer => {
    const header = 16 + elements.length * 16;
    const page = Buffer.alloc(4096);
    page.writeBigUInt64LE(3n, 0);
    page.writeUInt16LE(0x02, 8);
    page.writeUInt16LE(elements.length, 10);
    let data = header;
    elements.forEach(([key, value, flags], index) => {
      const at = 16 + index * 16;
      page.writeUInt32LE(flags ?? 0, at);
      page.writeUInt32LE(data - at, at + 4);
      page.writeUInt32LE(key.length, at + 8);
      page.writeUInt32LE(value.length, at + 12);
      page.write(key + value, data, "latin1");
      data += key.length + value.length;
    });
    return page;
  };

  it("reads the 16-byte page header", () => {
    const page = leaf([["a", "1"]]);
    page.writeUInt32LE(2, 12);
    expect(readPageHeader(page)).toEqual({ id: 3, flags: 2, count: 1, overflow: 2 });
    expect(readU64(Buffer.from("0100000002000000", "hex"), 0)).toBe(2 * 2 ** 32 + 1);
  });

  it("accepts exactly one known page flag", () => {
    expect(pageKind(0x01)).toBe("branch");
    expect(pageKind(0x02)).toBe("leaf");
    expect(pageKind(0x04)).toBe("meta");
    expect(pageKind(0x10)).toBe("freelist");
    expect(pageKind(0x03)).toBeUndefined();
    expect(pageKind(0)).toBeUndefined();
  });

  it("locates each leaf key and value relative to its element", () => {
    const page = leaf([
      ["alpha", "1"],
      ["beta", "22", 1],
    ]);
    const parsed = parseLeafPage(page, 2, 3, "page 3");
    expect(page.toString("latin1", parsed.keyStart[0], parsed.keyEnd[0])).toBe("alpha");
    expect(page.toString("latin1", parsed.keyEnd[1], parsed.valueEnd[1])).toBe("22");
    expect(parsed.hasBuckets).toBe(true);
  });

  it("rejects leaf elements that point outside the page, empty keys and unknown element flags", () => {
    const outside = leaf([["a", "1"]]);
    outside.writeUInt32LE(5000, 16 + 4);
    expect(() => parseLeafPage(outside, 1, 3, "page 3")).toThrow(/page 3: leaf element 0 runs past the end/);
    expect(() => parseLeafPage(leaf([["a", "1"]]), 300, 3, "page 3")).toThrow(
      /page 3: 300 elements need 4816 bytes/,
    );
    expect(() => parseLeafPage(leaf([["", "1"]]), 1, 3, "page 3")).toThrow(/empty key/);
    expect(() => parseLeafPage(leaf([["a", "1", 4]]), 1, 3, "page 3")).toThrow(SnapshotCorruptError);
  });

  it("reads branch elements: key and child page id", () => {
    const page = Buffer.alloc(4096);
    page.writeUInt16LE(0x01, 8);
    page.writeUInt16LE(1, 10);
    page.writeUInt32LE(16, 16);
    page.writeUInt32LE(3, 20);
    page.writeBigUInt64LE(42n, 24);
    page.write("key", 32);
    const parsed = parseBranchPage(page, 1, "page 9");
    expect(parsed.children).toEqual([42]);
    expect(page.toString("latin1", parsed.keyStart[0], parsed.keyEnd[0])).toBe("key");
    page.writeUInt32LE(10_000, 16);
    expect(() => parseBranchPage(page, 1, "page 9")).toThrow(
      /page 9: key of branch element 0 runs past the end/,
    );
  });

  it("reads a freelist page, including one whose count overflows into the first id slot", () => {
    const page = Buffer.alloc(4096);
    page.writeBigUInt64LE(5n, 16);
    page.writeBigUInt64LE(6n, 24);
    expect(parseFreelistPage(page, 2, "freelist page 4")).toEqual([5, 6]);
    page.writeBigUInt64LE(2n, 16);
    page.writeBigUInt64LE(7n, 24);
    page.writeBigUInt64LE(8n, 32);
    expect(parseFreelistPage(page, 0xffff, "freelist page 4")).toEqual([7, 8]);
    page.writeBigUInt64LE(10_000n, 16);
    expect(() => parseFreelistPage(page, 0xffff, "freelist page 4")).toThrow(/lists 10000 ids/);
  });
});
