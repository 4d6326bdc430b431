// The verifier against snapshots of a real etcd 3.4: its figures must equal `etcdctl snapshot status`
// on the same file, and every kind of damage must be refused with a one-line reason.
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SnapshotCorruptError } from "../../lambdas/core/errors.js";
import { createEtcdClient, type EtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import {
  type SnapshotReport,
  verifySnapshotFile,
  verifySnapshotStream,
} from "../../lambdas/core/snapshot/verify-snapshot.js";
import { resealTrailer } from "../support/bbolt-builder.js";
import { type EtcdCluster, startEtcdCluster } from "../support/etcd-cluster.js";
import { createEtcdWriter, type EtcdWriter } from "../support/etcd-writer.js";
import { makeTempDir } from "../support/temp-dir.js";

const run = promisify(execFile);

let cluster: EtcdCluster;
let writer: EtcdWriter;
let client: EtcdClient;
let temp: { path: string; remove: () => Promise<void> };
/** The user keys alive in etcd, as the tests wrote them. */
const live = new Set<string>();
let snapshotNumber = 0;

beforeAll(async () => {
  temp = await makeTempDir("verify-snapshot");
  cluster = await startEtcdCluster();
  writer = createEtcdWriter(cluster);
  client = createEtcdClient({ endpoint: cluster.endpoints[0] as string });
});

afterAll(async () => {
  client?.close();
  await cluster?.stop();
  await temp?.remove();
});

async function putMany(entries: Array<[string, string | Buffer]>): Promise<number> {
  const revision = await writer.putMany(entries);
  for (const [key] of entries) live.add(key);
  return revision;
}

async function saveSnapshot(): Promise<string> {
  const path = join(temp.path, `snapshot-${snapshotNumber++}.db`);
  await run("etcdctl", [...cluster.etcdctlArgs(), "--command-timeout=30s", "snapshot", "save", path]);
  return path;
}

interface EtcdctlStatus {
  hash: number;
  revision: number;
  totalKey: number;
  totalSize: number;
}

async function etcdctlStatus(path: string): Promise<EtcdctlStatus> {
  const { stdout } = await run("etcdctl", ["snapshot", "status", "-w", "json", path]);
  return JSON.parse(stdout) as EtcdctlStatus;
}

/** The etcd member, as verification asks it for its HashKV. */
function thisMember() {
  return { description: "the etcd member", hashKV: (revision: number) => client.hashKV(revision) };
}

/** Snapshots etcd, verifies the file and checks the figures against etcdctl's. */
async function snapshotAndCompare(): Promise<{ path: string; report: SnapshotReport }> {
  const path = await saveSnapshot();
  const [report, status] = await Promise.all([
    verifySnapshotFile(path, { members: [thisMember()] }),
    etcdctlStatus(path),
  ]);
  expect({
    hash: report.hash,
    revision: report.revision,
    totalKey: report.totalKey,
    totalSize: report.totalSize,
  }).toEqual(status);
  expect(report.liveKeyCount).toBe(live.size);
  expect(report.hasTrailer).toBe(true);
  const bytes = await readFile(path);
  expect(report.sha256).toBe(
    createHash("sha256")
      .update(bytes.subarray(0, bytes.length - 32))
      .digest("hex"),
  );
  expect(report.fileBytes).toBe(bytes.length);
  expect(report.totalSize).toBe(bytes.length - 32);
  // The member's HashKV at the snapshot's revision is the file's, and the member compacted where the
  // file says, so both hashes are the one it answers.
  const member = await client.hashKV(report.revision);
  expect(report.memberHash).toEqual({
    outcome: "matched",
    revision: report.revision,
    compactRevision: member.compactRevision,
    hash: member.hash,
    agreeing: ["the etcd member"],
  });
  expect(member.compactRevision).toBe(report.compactRevision ?? -1);
  expect(report.kvHash).toBe(member.hash);
  return { path, report };
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

/** Runs `tasks` with at most `limit` in flight. */
async function inParallel(tasks: Array<() => Promise<unknown>>, limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await (tasks[next++] as () => Promise<unknown>)();
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

/** A value of `size` bytes that starts with `marker`, so a test can find it in the file. */
function valueWithMarker(marker: string, size: number): Buffer {
  const value = randomBytes(size);
  value.write(marker, 0, "latin1");
  return value;
}

describe("verifySnapshotFile on etcd 3.4 snapshots", () => {
  it("agrees with etcdctl on a database of small keys", async () => {
    const entries: Array<[string, string]> = [];
    for (let index = 0; index < 3000; index++)
      entries.push([`/registry/configmaps/ns-${index % 7}/cm-${index}`, `v${index}`]);
    await putMany(entries);
    const { report } = await snapshotAndCompare();
    expect(report.revision).toBe(await writer.revision());
    expect(report.pageSize).toBe(4096);
    expect(report.compactRevision).toBeUndefined();
    expect(report.scheduledCompactRevision).toBeUndefined();
  });

  it("agrees with etcdctl when values span overflow pages (200 KB to 1.4 MB)", async () => {
    await putMany([
      ["/big/a", valueWithMarker("BIG-A", 200_000)],
      ["/big/b", valueWithMarker("BIG-B", 700_000)],
    ]);
    await putMany([["/big/c", valueWithMarker("BIG-C", 1_400_000)]]);
    await snapshotAndCompare();
  });

  it("agrees with etcdctl after deletes: tombstones count as entries, not as live keys", async () => {
    for (let index = 0; index < 200; index++) {
      const key = `/registry/configmaps/ns-${index % 7}/cm-${index}`;
      await writer.delete(key);
      live.delete(key);
    }
    await writer.delete("/big/b");
    live.delete("/big/b");
    await snapshotAndCompare();
  });

  it("agrees with etcdctl on thousands of revisions of one key", async () => {
    const tasks = Array.from(
      { length: 2500 },
      (_, index) => () => writer.put("/hot/key", `revision ${index}`),
    );
    await inParallel(tasks, 16);
    live.add("/hot/key");
    const { report } = await snapshotAndCompare();
    expect(report.revision).toBe(await writer.revision());
  });

  it("agrees with etcdctl on keys attached to leases", async () => {
    for (let index = 0; index < 5; index++) {
      const lease = await writer.grantLease(600);
      await writer.put(`/leased/${index}`, "x", { lease });
      live.add(`/leased/${index}`);
    }
    await snapshotAndCompare();
  });

  it("agrees with etcdctl after a physical compaction, and reports the compacted revision", async () => {
    const revision = await writer.revision();
    await writer.compact(revision, true);
    await putMany([["/after/compaction", "1"]]);
    const { report } = await snapshotAndCompare();
    expect(report.compactRevision).toBe(revision);
    expect(report.scheduledCompactRevision).toBe(revision);
    expect(report.revision).toBe(revision + 1);
  });

  it("matches the member's HashKV after the member compacts history that the snapshot still holds", async () => {
    // Below the compaction the member hashes only each live key's newest entry: the tombstone, the
    // superseded puts and the one superseded exactly at the compact revision must all be left out.
    await writer.put("/hashkv/gone", "1");
    await writer.delete("/hashkv/gone");
    await writer.put("/hashkv/kept", "1");
    const compactAt = await writer.put("/hashkv/kept", "2");
    await writer.put("/hashkv/kept", "3");
    await putMany([["/hashkv/after", "1"]]);
    live.add("/hashkv/kept");
    const { path, report } = await snapshotAndCompare();
    await writer.compact(compactAt);
    // Writes after the snapshot do not change the member's answer at the snapshot's revision.
    await writer.put("/hashkv/kept", "4");
    const member = await client.hashKV(report.revision);
    expect(member.compactRevision).toBe(compactAt);
    const again = await verifySnapshotFile(path, { members: [thisMember()] });
    expect(again.memberHash).toEqual({
      outcome: "matched",
      revision: report.revision,
      compactRevision: compactAt,
      hash: member.hash,
      agreeing: ["the etcd member"],
    });
    // What the member answered before that compaction is another hash.
    expect(report.kvHash).not.toBe(member.hash);
  });

  it("gives the same report from a stream, and removes its staged file", async () => {
    const path = await saveSnapshot();
    const staging = await makeTempDir("verify-stage");
    try {
      const fromFile = await verifySnapshotFile(path);
      // What the staging directory holds each time the verifier takes another chunk of the stream.
      const stagedWhileStreaming: number[] = [];
      const source = Readable.from(
        (async function* () {
          for await (const chunk of createReadStream(path, { highWaterMark: 32 * 1024 })) {
            stagedWhileStreaming.push((await readdir(staging.path)).length);
            yield chunk;
          }
        })(),
      );
      const fromStream = await verifySnapshotStream(source, {
        stagingDir: staging.path,
        expectedBytes: fromFile.fileBytes,
      });
      expect(fromStream).toEqual(fromFile);
      // Staged there, one file, while it streamed; gone after.
      expect(stagedWhileStreaming).toContain(1);
      expect(await readdir(staging.path)).toEqual([]);
    } finally {
      await staging.remove();
    }
  });
});

/** Where the value (bucket header) of top-level bucket `name` sits, read straight from the file's bytes. */
function bucketValueAt(bytes: Buffer, name: string): number {
  const pageSize = bytes.readUInt32LE(24);
  const page = Number(bytes.readBigUInt64LE(32)) * pageSize; // meta page 0's root: one leaf in etcd
  expect(bytes.readUInt16LE(page + 8)).toBe(0x02);
  for (let index = 0; index < bytes.readUInt16LE(page + 10); index++) {
    const element = page + 16 + index * 16;
    const keyAt = element + bytes.readUInt32LE(element + 4);
    const keyLength = bytes.readUInt32LE(element + 8);
    if (bytes.toString("latin1", keyAt, keyAt + keyLength) === name) return keyAt + keyLength;
  }
  throw new Error(`no bucket ${name} in the root page`);
}

function bucketRootOf(bytes: Buffer, name: string): number {
  return Number(bytes.readBigUInt64LE(bucketValueAt(bytes, name)));
}

describe("verifySnapshotFile on damaged etcd snapshots", () => {
  let original: Buffer;
  const damaged = async (name: string, bytes: Buffer) => {
    const path = join(temp.path, `damaged-${name}.db`);
    await writeFile(path, bytes);
    return path;
  };

  beforeAll(async () => {
    original = await readFile(await saveSnapshot());
  });

  it("refuses a flipped byte inside a value, which etcdctl snapshot status accepts", async () => {
    const bytes = Buffer.from(original);
    const at = bytes.indexOf("BIG-C") + 500_000;
    expect(at).toBeGreaterThan(500_000);
    bytes.writeUInt8(bytes.readUInt8(at) ^ 0x01, at);
    const path = await damaged("flipped", bytes);
    await expectCorrupt(
      verifySnapshotFile(path),
      /^snapshot trailer mismatch: sha256 of the first \d+ bytes is [0-9a-f]{64}, trailer says [0-9a-f]{64}$/,
    );
    await expect(etcdctlStatus(path)).resolves.toBeDefined();
  });

  it("refuses, through the member's HashKV alone, a sound file whose value was changed and trailer resealed", async () => {
    const bytes = Buffer.from(original);
    const at = bytes.indexOf("BIG-C") + 500_000;
    bytes.writeUInt8(bytes.readUInt8(at) ^ 0x01, at);
    const path = await damaged("flipped-resealed", resealTrailer(bytes));
    // Sound as a file: only the member knows that the value is not the one it holds.
    const alone = await verifySnapshotFile(path);
    expect(alone.memberHash).toBeUndefined();
    await expectCorrupt(
      verifySnapshotFile(path, { members: [thisMember()] }),
      /^the snapshot does not hold what the etcd member holds at revision \d+: HashKV \d+ \(compacted at \d+\), the snapshot's \d+$/,
    );
  });

  it("reports, without failing, a member that can no longer answer for the snapshot's revision", async () => {
    const path = await saveSnapshot();
    const report = await verifySnapshotFile(path);
    await writer.put("/hashkv/later", "1");
    await writer.compact(await writer.revision());
    const verified = await verifySnapshotFile(path, { members: [thisMember()] });
    expect(verified.memberHash).toEqual({
      outcome: "not-compared",
      revision: report.revision,
      reason: `the etcd member: compacted past revision ${report.revision} since the snapshot`,
    });
    const unreachable = createEtcdClient({ endpoint: "http://127.0.0.1:9", callTimeoutMs: 1000 });
    try {
      const answered = await verifySnapshotFile(path, {
        members: [{ description: "a stopped member", hashKV: (revision) => unreachable.hashKV(revision) }],
      });
      expect(answered.memberHash).toMatchObject({ outcome: "not-compared" });
      expect((answered.memberHash as { reason: string }).reason).toMatch(
        /^a stopped member: did not answer HashKV: /,
      );
    } finally {
      unreachable.close();
    }
  });

  it("refuses a truncated snapshot", async () => {
    const cut = Math.floor(original.length / 2 / 4096) * 4096;
    await expectCorrupt(
      verifySnapshotFile(await damaged("truncated", original.subarray(0, cut))),
      new RegExp(`^truncated: file has ${cut} bytes, meta says the database spans ${original.length - 32}$`),
    );
  });

  it("refuses a sound database whose trailer is wrong", async () => {
    const bytes = Buffer.concat([original.subarray(0, original.length - 32), randomBytes(32)]);
    await expectCorrupt(verifySnapshotFile(await damaged("trailer", bytes)), /^snapshot trailer mismatch: /);
  });

  it("refuses random bytes and an empty file as not bbolt", async () => {
    await expectCorrupt(
      verifySnapshotFile(await damaged("random", randomBytes(512 * 100 + 32))),
      /^not a bbolt file: bad magic at page 0$/,
    );
    await expectCorrupt(
      verifySnapshotFile(await damaged("empty", Buffer.alloc(0))),
      /^not a bbolt file: the file is empty$/,
    );
  });

  it("refuses a meta page whose checksum no longer matches, even with a recomputed trailer", async () => {
    const bytes = Buffer.from(original);
    bytes.writeUInt8(bytes.readUInt8(40) ^ 0x01, 40); // root bucket sequence, covered by the checksum
    await expectCorrupt(
      verifySnapshotFile(await damaged("meta", resealTrailer(bytes))),
      /^meta page 0 is invalid: checksum mismatch: stored 0x[0-9a-f]+, computed 0x[0-9a-f]+$/,
    );
  });

  it("refuses a tree whose `key` bucket points back at the root page, even with a recomputed trailer", async () => {
    const bytes = Buffer.from(original);
    // The root page (meta page 0's root) is a leaf of bucket entries; make bucket `key` start at it.
    const root = Number(bytes.readBigUInt64LE(32));
    bytes.writeBigUInt64LE(BigInt(root), bucketValueAt(bytes, "key"));
    await expectCorrupt(
      verifySnapshotFile(await damaged("cycle", resealTrailer(bytes))),
      new RegExp(`^page ${root} referenced twice$`),
    );
  });

  it("refuses keys out of order in a leaf, even with a recomputed trailer", async () => {
    const bytes = Buffer.from(original);
    // Descend from bucket `key`'s root along first children to a leaf, then swap its first two elements.
    const pageSize = bytes.readUInt32LE(24);
    let pgid = bucketRootOf(bytes, "key");
    while (bytes.readUInt16LE(pgid * pageSize + 8) === 0x01)
      pgid = Number(bytes.readBigUInt64LE(pgid * pageSize + 24));
    expect(bytes.readUInt16LE(pgid * pageSize + 8)).toBe(0x02);
    expect(bytes.readUInt16LE(pgid * pageSize + 10)).toBeGreaterThan(1);
    const element = pgid * pageSize + 16;
    const first = bytes.subarray(element, element + 16);
    const second = bytes.subarray(element + 16, element + 32);
    // Element positions are relative to the element: adjust by the 16 bytes the swap moves them.
    const firstPos = first.readUInt32LE(4) - 16;
    const secondPos = second.readUInt32LE(4) + 16;
    const swapped = [Buffer.from(second), Buffer.from(first)];
    (swapped[0] as Buffer).writeUInt32LE(secondPos, 4);
    (swapped[1] as Buffer).writeUInt32LE(firstPos, 4);
    Buffer.concat(swapped).copy(bytes, element);
    await expectCorrupt(
      verifySnapshotFile(await damaged("order", resealTrailer(bytes))),
      /^keys out of order in page \d+: element 1 is not greater than element 0$/,
    );
  });
});
