import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import {
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorNames } from "../../lambdas/core/errors.js";
import { chooseSnapshotMember } from "../../lambdas/core/etcd/choose-member.js";
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import type { SnapshotResponse } from "../../lambdas/core/etcd/etcd-rpc-descriptor.js";
import { createGrpcSnapshotSource } from "../../lambdas/core/etcd/grpc-snapshot-source.js";
import { newSnapshotId } from "../../lambdas/core/snapshot/snapshot-naming.js";
import { streamSnapshot, streamSnapshotToS3 } from "../../lambdas/core/snapshot/stream-snapshot.js";
import { createS3Client } from "../../lambdas/core/store/aws-clients.js";
import { MultipartUploadSink } from "../../lambdas/core/store/multipart-upload-sink.js";
import { bufferSnapshotSource } from "../support/buffer-snapshot-source.js";
import { enableEtcdAuthWithReaderClient } from "../support/etcd-auth.js";
import { type EtcdCluster, startEtcdCluster } from "../support/etcd-cluster.js";
import { createEtcdWriter } from "../support/etcd-writer.js";
import { type LocalS3, startLocalS3 } from "../support/s3-server.js";
import { makeTempDir } from "../support/temp-dir.js";
import { createTestCertificates } from "../support/test-certificates.js";

const run = promisify(execFile);
const partSize = 5 * 1024 * 1024;

let etcd: EtcdCluster;
let s3: LocalS3;
let work: { path: string; remove: () => Promise<void> };

beforeAll(async () => {
  [etcd, s3, work] = await Promise.all([startEtcdCluster(), startLocalS3(), makeTempDir("stream")]);
  // About 24 MB of values, so that a snapshot spans several 5 MiB parts.
  const writer = createEtcdWriter(etcd);
  await writer.putMany(
    Array.from({ length: 24 }, (_, index) => [
      `/registry/configmaps/default/big-${index}`,
      randomBytes(1_000_000),
    ]),
  );
  await writer.putMany(
    Array.from({ length: 500 }, (_, index) => [`/registry/pods/default/pod-${index}`, `spec-${index}`]),
  );
});

afterAll(async () => {
  await Promise.all([etcd?.stop(), s3?.stop(), work?.remove()]);
});

function destination(cluster = "test-cluster") {
  return {
    client: s3.client,
    bucket: s3.bucket,
    prefix: "etcd",
    cluster,
    snapshotId: newSnapshotId(),
    partSize,
  };
}

async function readObject(key: string): Promise<Buffer> {
  const reply = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
  return Buffer.from(
    await (reply.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
  );
}

function* chunksOf(bytes: Buffer, size: number): Generator<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size);
}

interface SlowS3 {
  client: ReturnType<typeof createS3Client>;
  /** In order: `start part N` when the sink sends a part, `end part N` when S3 answered, `abort`. */
  timeline: string[];
  maxPartsInFlight: number;
  /** Bytes of parts S3 has answered for. */
  acknowledgedBytes: number;
  /** Distinct memory blocks the sent parts were read from. */
  partBuffers: Set<ArrayBufferLike>;
}

/** A client to the local S3 whose UploadPart requests reach it only after `partDelayMs`, as from a slow S3. */
function slowS3(partDelayMs: number, onPartStart: (partNumber: number) => void = () => {}): SlowS3 {
  const client = createS3Client({ endpoint: s3.endpoint });
  const slow: SlowS3 = {
    client,
    timeline: [],
    maxPartsInFlight: 0,
    acknowledgedBytes: 0,
    partBuffers: new Set(),
  };
  let partsInFlight = 0;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === "AbortMultipartUploadCommand") slow.timeline.push("abort");
      if (context.commandName !== "UploadPartCommand") return next(args);
      const input = args.input as { PartNumber: number; ContentLength: number; Body: Buffer };
      slow.timeline.push(`start part ${input.PartNumber}`);
      onPartStart(input.PartNumber);
      slow.partBuffers.add(input.Body.buffer);
      slow.maxPartsInFlight = Math.max(slow.maxPartsInFlight, ++partsInFlight);
      try {
        await sleep(partDelayMs);
        const reply = await next(args);
        slow.acknowledgedBytes += input.ContentLength;
        return reply;
      } finally {
        partsInFlight--;
        slow.timeline.push(`end part ${input.PartNumber}`);
      }
    },
    { step: "deserialize", name: "slowUploadPart" },
  );
  return slow;
}

async function expectNothingLeftBehind(): Promise<void> {
  expect(await s3.listOpenMultipartUploads()).toEqual([]);
  expect(await s3.listKeys("etcd/broken/")).toEqual([]);
}

describe("streaming a snapshot from a real etcd into S3", () => {
  it("stores exactly the bytes `etcdctl snapshot save` writes, in several parts, with metadata and tags", async () => {
    const reference = join(work.path, "reference.db");
    await run("etcdctl", [...etcd.etcdctlArgs(), "snapshot", "save", reference]);
    const source = createGrpcSnapshotSource(createEtcdClient({ endpoint: etcd.endpoints[0] as string }));
    const stored = await streamSnapshotToS3(source, destination()).finally(() => source.close());

    const expected = await readFile(reference);
    const object = await readObject(stored.object.key);
    expect(object.equals(expected)).toBe(true);
    expect(stored.bytes).toBe(expected.length);
    expect(stored.sha256).toBe(createHash("sha256").update(expected.subarray(0, -32)).digest("hex"));
    expect(stored.sha256).toBe(expected.subarray(-32).toString("hex"));
    expect(stored.object.parts).toBe(Math.ceil(expected.length / partSize));
    expect(stored.object.key).toMatch(
      /^etcd\/test-cluster\/\d{4}\/\d{2}\/\d{2}\/\d{8}T\d{9}Z-[0-9a-f]{6}\.db$/,
    );
    expect(stored.etcdVersion).toBe("3.4.23");
    expect(stored.revisionAfter).toBe(stored.revisionBefore);

    const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: stored.object.key }));
    expect(head.Metadata).toMatchObject({
      cluster: "test-cluster",
      "snapshot-id": stored.snapshotId,
      "etcd-version": "3.4.23",
      "revision-before": String(stored.revisionBefore),
    });
    const tags = await s3.client.send(
      new GetObjectTaggingCommand({ Bucket: s3.bucket, Key: stored.object.key }),
    );
    expect(tags.TagSet).toContainEqual({ Key: "sha256", Value: stored.sha256 });
    expect(await s3.listOpenMultipartUploads()).toEqual([]);
  });

  it("reuses part buffers without mixing parts, and signs parts without hashing their payload", async () => {
    // 8 parts through 2 in flight: every buffer is reused several times, so a buffer handed back too early
    // would corrupt a later part.
    const client = createS3Client({ endpoint: s3.endpoint });
    const signedPartHeaders: Array<Record<string, string>> = [];
    client.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { headers: Record<string, string>; query?: Record<string, string> };
        if (request.query?.partNumber) signedPartHeaders.push({ ...request.headers });
        return next(args);
      },
      { step: "deserialize", name: "captureSignedPartHeaders" },
    );
    const bytes = randomBytes(8 * partSize - 12345);
    const key = "etcd/reuse/parts.bin";
    const sink = new MultipartUploadSink({ client, bucket: s3.bucket, key, partSize, partsInFlight: 2 });
    await pipeline(Readable.from(chunksOf(bytes, 32 * 1024)), sink);

    expect(sink.result.parts).toBe(8);
    expect((await readObject(key)).equals(bytes)).toBe(true);
    expect(signedPartHeaders).toHaveLength(8);
    for (const headers of signedPartHeaders) {
      expect(headers["x-amz-content-sha256"]).toBe("UNSIGNED-PAYLOAD");
      expect(headers["x-amz-checksum-crc32c"]).toMatch(/^[A-Za-z0-9+/]{6}==$/);
      expect(headers.authorization).toContain("x-amz-content-sha256");
    }
  });

  it("holds at most partsInFlight parts in flight and partSize × (partsInFlight + 1) bytes against a slow S3", async () => {
    const slow = slowS3(300);
    const partsInFlight = 2;
    const chunkSize = 64 * 1024;
    const bytes = randomBytes(8 * partSize);
    const sink = new MultipartUploadSink({
      client: slow.client,
      bucket: s3.bucket,
      key: "etcd/slow/parts.bin",
      partSize,
      partsInFlight,
    });
    // Bytes handed to the sink and not yet acknowledged by S3 are what the upload holds in memory.
    const offered = new PassThrough();
    let offeredBytes = 0;
    let maxHeld = 0;
    offered.on("data", (chunk: Buffer) => {
      offeredBytes += chunk.length;
      maxHeld = Math.max(maxHeld, offeredBytes - slow.acknowledgedBytes);
    });
    try {
      await pipeline(Readable.from(chunksOf(bytes, chunkSize)), offered, sink);
    } finally {
      slow.client.destroy();
    }

    expect(sink.result.parts).toBe(8);
    // S3 was slow enough for the limit to be reached, and it was never passed.
    expect(slow.maxPartsInFlight).toBe(partsInFlight);
    // The part buffers (those in flight and the one filling) are reused, not allocated per part.
    expect(slow.partBuffers.size).toBeLessThanOrEqual(partsInFlight + 1);
    // Those buffers, plus what the sink's own write queue may hold: never the 40 MiB the source could give.
    expect(maxHeld).toBeGreaterThan(partsInFlight * partSize);
    expect(maxHeld).toBeLessThanOrEqual(
      partSize * (partsInFlight + 1) + sink.writableHighWaterMark + chunkSize,
    );
  });

  it("brackets the snapshot's revision between the member's revisions before and after while writes go on", async () => {
    const writer = createEtcdWriter(etcd);
    let writing = true;
    const writes = (async () => {
      for (let index = 0; writing; index++)
        await writer.put(`/registry/leases/kube-system/tick-${index % 10}`, `${index}`);
    })();
    const source = createGrpcSnapshotSource(createEtcdClient({ endpoint: etcd.endpoints[0] as string }));
    const stored = await streamSnapshotToS3(source, destination()).finally(() => {
      writing = false;
      source.close();
    });
    await writes;
    expect(stored.revisionAfter).toBeGreaterThan(stored.revisionBefore);
  });

  it("reads the snapshot over mutual TLS", async () => {
    const secure = await startEtcdCluster({ tls: true });
    try {
      await createEtcdWriter(secure).put("/registry/secrets/default/token", "secret");
      const tls = secure.clientTls;
      const source = createGrpcSnapshotSource(
        createEtcdClient({ endpoint: secure.endpoints[0] as string, tls }),
      );
      const stored = await streamSnapshotToS3(source, destination("tls-cluster")).finally(() =>
        source.close(),
      );
      expect(stored.bytes % 512).toBe(32);

      const noCertificate = createGrpcSnapshotSource(
        createEtcdClient({
          endpoint: secure.endpoints[0] as string,
          tls: { ca: tls?.ca },
          callTimeoutMs: 2000,
        }),
      );
      // A refusal no retry changes: the state machine does not retry it.
      await expect(streamSnapshotToS3(noCertificate, destination("tls-cluster"))).rejects.toMatchObject({
        name: ErrorNames.EtcdAccessDenied,
        message: expect.stringMatching(/bad certificate/),
      });
      noCertificate.close();

      // etcd's certificate checked against another CA: refused on our side, as durably.
      await mkdir(join(work.path, "foreign-ca"), { recursive: true });
      const foreign = await createTestCertificates(join(work.path, "foreign-ca"));
      const wrongCa = { ...tls, ca: await readFile(foreign.caFile) };
      await expect(
        chooseSnapshotMember(secure.endpoints, { tls: wrongCa, callTimeoutMs: 2000 }),
      ).rejects.toMatchObject({
        name: ErrorNames.EtcdAccessDenied,
        message: expect.stringMatching(/unable to verify.*check the CA, client certificate and key/),
      });
    } finally {
      await secure.stop();
    }
  });

  it("fails a snapshot that etcd's RBAC refuses to a non-root user as access denied, not as a broken stream", async () => {
    const secure = await startEtcdCluster({ tls: true });
    try {
      // The client certificate's CN (etcd-backup) is its etcd user once auth is on: a reader, not root.
      await enableEtcdAuthWithReaderClient(secure);

      const source = createGrpcSnapshotSource(
        createEtcdClient({ endpoint: secure.endpoints[0] as string, tls: secure.clientTls }),
      );
      const target = destination("rbac-cluster");
      // Maintenance.Snapshot needs root (etcd's IsAdminPermitted): no retry changes that.
      await expect(streamSnapshotToS3(source, target).finally(() => source.close())).rejects.toMatchObject({
        name: ErrorNames.EtcdAccessDenied,
        message: expect.stringMatching(/refused the snapshot: .*permission denied/),
      });
      const uploads = await s3.client.send(
        new ListMultipartUploadsCommand({ Bucket: s3.bucket, Prefix: `${target.prefix}/rbac-cluster/` }),
      );
      expect(uploads.Uploads ?? []).toEqual([]);
    } finally {
      await secure.stop();
    }
  });

  it("keeps memory bounded with a slow sink: etcd is paused, not buffered", async () => {
    // Counted where the source takes messages off the gRPC call: what it accepted from etcd, whether or not
    // it has passed them on yet. Counting the source's own output would miss bytes piling up inside it.
    const client = createEtcdClient({ endpoint: etcd.endpoints[0] as string });
    let acceptedFromEtcd = 0;
    let consumed = 0;
    let maxLag = 0;
    const source = createGrpcSnapshotSource({
      ...client,
      openSnapshotCall: () => {
        const call = client.openSnapshotCall();
        call.on("data", (message: SnapshotResponse) => {
          acceptedFromEtcd += message.blob.length;
          maxLag = Math.max(maxLag, acceptedFromEtcd - consumed);
        });
        return call;
      },
    });
    const slowSink = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _encoding, callback) {
        consumed += chunk.length;
        setTimeout(callback, 1);
      },
    });
    const streamed = await streamSnapshot(source, () => slowSink).finally(() => source.close());
    expect(consumed).toBe(streamed.bytes);
    expect(acceptedFromEtcd).toBe(streamed.bytes);
    // Everything between etcd and the sink: stream buffers of about 1 MiB each, not the 25 MB snapshot.
    expect(maxLag).toBeLessThan(4 * 1024 * 1024);
  });
});

describe("a failed snapshot leaves nothing behind", () => {
  let snapshot: Buffer;
  beforeAll(async () => {
    const file = join(work.path, "damaged-source.db");
    await run("etcdctl", [...etcd.etcdctlArgs(), "snapshot", "save", file]);
    snapshot = await readFile(file);
  });

  it("aborts the upload when etcd dies mid-stream", async () => {
    const victim = await startEtcdCluster();
    try {
      await createEtcdWriter(victim).putMany(
        Array.from({ length: 30 }, (_, index) => [
          `/registry/configmaps/default/v-${index}`,
          randomBytes(1_000_000),
        ]),
      );
      const source = createGrpcSnapshotSource(createEtcdClient({ endpoint: victim.endpoints[0] as string }));
      let killed = false;
      const attempt = streamSnapshotToS3(source, destination("broken"), {
        onProgress: (bytes) => {
          if (!killed && bytes > 6 * 1024 * 1024) {
            killed = true;
            victim.killMember(0);
          }
        },
      });
      await expect(attempt).rejects.toMatchObject({ name: ErrorNames.SnapshotStreamInterrupted });
      source.close();
      await expectNothingLeftBehind();
    } finally {
      await victim.stop();
    }
  });

  it("rejects a trailer that does not match the database and aborts the upload", async () => {
    const damaged = Buffer.from(snapshot);
    const middle = Math.floor(damaged.length / 2);
    damaged.writeUInt8((damaged.readUInt8(middle) ^ 0xff) & 0xff, middle);
    await expect(
      streamSnapshotToS3(bufferSnapshotSource(damaged), destination("broken")),
    ).rejects.toMatchObject({
      name: ErrorNames.SnapshotCorrupt,
      message: expect.stringContaining("sha256 mismatch"),
    });
    await expectNothingLeftBehind();
  });

  it("rejects a truncated stream and aborts the upload", async () => {
    const truncated = snapshot.subarray(0, snapshot.length - 4096 - 32);
    await expect(
      streamSnapshotToS3(bufferSnapshotSource(truncated), destination("broken")),
    ).rejects.toMatchObject({
      name: ErrorNames.SnapshotCorrupt,
      message: expect.stringContaining("truncated"),
    });
    await expectNothingLeftBehind();
  });

  it("aborts the upload when S3 fails mid-upload, and reports the failed part", async () => {
    s3.failUploadPartAfter(2);
    try {
      await expect(
        streamSnapshotToS3(bufferSnapshotSource(snapshot), destination("broken")),
      ).rejects.toMatchObject({
        name: ErrorNames.StorageUnavailable,
        message: expect.stringMatching(/UploadPart \d+ failed/),
      });
    } finally {
      s3.failUploadPartAfter(Number.POSITIVE_INFINITY);
    }
    await expectNothingLeftBehind();
  });

  it("starts no part once the upload is aborting, so a slow S3 keeps no orphan part", async () => {
    // The source fails while part 1 is in flight, long after part 2 filled up and began waiting for the
    // only slot (partsInFlight 1): the write waiting for that slot wakes up only after the abort began.
    const buffered = bufferSnapshotSource(snapshot);
    let stream: Readable | undefined;
    const source = {
      ...buffered,
      openStream: () => {
        stream = buffered.openStream();
        return stream;
      },
    };
    const slow = slowS3(500, (partNumber) => {
      if (partNumber === 1) setTimeout(() => stream?.destroy(new Error("etcd went away")), 200);
    });
    try {
      await expect(
        streamSnapshotToS3(source, { ...destination("broken"), client: slow.client, partsInFlight: 1 }),
      ).rejects.toThrow("etcd went away");
    } finally {
      slow.client.destroy();
    }
    expect(slow.timeline).toEqual(["start part 1", "end part 1", "abort"]);
    await expectNothingLeftBehind();
  });

  it("fails with StorageAccessDeniedError, which the state machine does not retry, when the bucket does not exist", async () => {
    await expect(
      streamSnapshotToS3(bufferSnapshotSource(snapshot), {
        ...destination("broken"),
        bucket: "no-such-bucket",
      }),
    ).rejects.toMatchObject({
      name: ErrorNames.StorageAccessDenied,
      message: expect.stringMatching(/NoSuchBucket.*retrying cannot help/),
    });
    await expectNothingLeftBehind();
  });

  it("fails with EtcdUnavailableError before starting any upload when etcd cannot be reached", async () => {
    const source = createGrpcSnapshotSource(
      createEtcdClient({ endpoint: "http://127.0.0.1:1", callTimeoutMs: 1000 }),
    );
    // Every S3 command the attempt sends, by name: none may start an upload.
    const sent: string[] = [];
    s3.client.middlewareStack.add(
      (next, context) => (args) => {
        sent.push(String(context.commandName));
        return next(args);
      },
      { step: "initialize", name: "recordCommandNames" },
    );
    try {
      await expect(streamSnapshotToS3(source, destination("broken"))).rejects.toMatchObject({
        name: ErrorNames.EtcdUnavailable,
        message: expect.stringContaining("127.0.0.1:1"),
      });
    } finally {
      s3.client.middlewareStack.remove("recordCommandNames");
    }
    expect(sent).not.toContain("CreateMultipartUploadCommand");
    expect(sent).not.toContain("PutObjectCommand");
    source.close();
    await expectNothingLeftBehind();
  });
});
