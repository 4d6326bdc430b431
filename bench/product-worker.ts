// One product operation per process, so that the peak RSS the bench reads is the product's own: the
// bench bundles this file with esbuild and runs it with plain `node` (no TypeScript loader thread), with
// the etcd, S3 and Kubernetes API stand-ins in other processes. Prints one JSON line: the operation's own duration
// (process start-up excluded, as the reference tools' start-up is negligible) and what it measured.
import { createHash, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Writable } from "node:stream";
import { DeleteObjectCommand } from "@aws-sdk/client-s3";
import { crc32c, crc32cImplementation } from "../lambdas/core/checksum/crc32c.js";
import { createEtcdClient } from "../lambdas/core/etcd/etcd-client.js";
import { createGrpcSnapshotSource } from "../lambdas/core/etcd/grpc-snapshot-source.js";
import { kubeConfigFromText } from "../lambdas/core/kube/kube-config.js";
import {
  type KubernetesSourceKind,
  openMemberSnapshotSource,
  readMemberPod,
} from "../lambdas/core/kube/kubernetes-member-source.js";
import { newSnapshotId } from "../lambdas/core/snapshot/snapshot-naming.js";
import type { SnapshotSource } from "../lambdas/core/snapshot/snapshot-source.js";
import {
  streamSnapshot,
  streamSnapshotToFile,
  streamSnapshotToS3,
} from "../lambdas/core/snapshot/stream-snapshot.js";
import { verifySnapshotFile } from "../lambdas/core/snapshot/verify-snapshot.js";
import { createS3Client } from "../lambdas/core/store/aws-clients.js";
import type { KubeApiAccess } from "./kube-api-endpoint-process.js";
import { uploadFileInParts } from "./plain-multipart-upload.js";

export type WorkerTask =
  | { kind: "snapshot-file"; etcdEndpoint: string; path: string }
  | {
      kind: "snapshot-s3";
      etcdEndpoint: string;
      s3Endpoint: string;
      bucket: string;
      partSize?: number;
      partsInFlight?: number;
    }
  | {
      /** Through the Kubernetes API: etcdctl in the pod (exec), or gRPC through a port-forward. */
      kind: "snapshot-exec-s3" | "snapshot-port-forward-s3";
      kube: KubeApiAccess;
      s3Endpoint: string;
      bucket: string;
    }
  | { kind: "snapshot-slow-sink"; etcdEndpoint: string; bytesPerSecond: number }
  | {
      /** Through the Kubernetes API, as above, into the slow sink. */
      kind: "snapshot-exec-slow-sink" | "snapshot-port-forward-slow-sink";
      kube: KubeApiAccess;
      bytesPerSecond: number;
    }
  | {
      kind: "upload-file";
      path: string;
      s3Endpoint: string;
      bucket: string;
      partSize: number;
      partsInFlight: number;
    }
  | { kind: "verify"; path: string }
  | { kind: "component-rates"; mebibytes: number };

export interface WorkerResult {
  durationMs: number;
  bytes: number;
  details?: Record<string, unknown>;
}

async function runTask(task: WorkerTask): Promise<WorkerResult> {
  switch (task.kind) {
    case "snapshot-file": {
      const source = createGrpcSnapshotSource(createEtcdClient({ endpoint: task.etcdEndpoint }));
      try {
        const started = performance.now();
        const saved = await streamSnapshotToFile(source, task.path);
        return { durationMs: performance.now() - started, bytes: saved.bytes };
      } finally {
        source.close();
      }
    }
    case "snapshot-s3":
    case "snapshot-exec-s3":
    case "snapshot-port-forward-s3": {
      const client = createS3Client({ endpoint: task.s3Endpoint });
      const { source, started } = await openTaskSource(task);
      const partSettings =
        task.kind === "snapshot-s3" ? { partSize: task.partSize, partsInFlight: task.partsInFlight } : {};
      try {
        const stored = await streamSnapshotToS3(source, {
          client,
          bucket: task.bucket,
          prefix: "bench",
          cluster: "bench",
          snapshotId: newSnapshotId(),
          ...partSettings,
        });
        const durationMs = performance.now() - started;
        // Keep the stand-in's disk flat from run to run.
        await client.send(new DeleteObjectCommand({ Bucket: task.bucket, Key: stored.object.key }));
        return { durationMs, bytes: stored.bytes, details: { parts: stored.object.parts } };
      } finally {
        source.close();
        client.destroy();
      }
    }
    case "snapshot-slow-sink":
    case "snapshot-exec-slow-sink":
    case "snapshot-port-forward-slow-sink": {
      const { source, started } = await openTaskSource(task);
      try {
        const streamed = await streamSnapshot(source, () => createRateLimitedSink(task.bytesPerSecond));
        return { durationMs: performance.now() - started, bytes: streamed.bytes };
      } finally {
        source.close();
      }
    }
    case "upload-file": {
      const client = createS3Client({ endpoint: task.s3Endpoint });
      const key = `bench/plain/${newSnapshotId()}.db`;
      try {
        const started = performance.now();
        const bytes = await uploadFileInParts(task.path, {
          client,
          bucket: task.bucket,
          key,
          partSize: task.partSize,
          partsInFlight: task.partsInFlight,
        });
        const durationMs = performance.now() - started;
        await client.send(new DeleteObjectCommand({ Bucket: task.bucket, Key: key }));
        return { durationMs, bytes };
      } finally {
        client.destroy();
      }
    }
    case "verify": {
      const started = performance.now();
      const report = await verifySnapshotFile(task.path);
      return {
        durationMs: performance.now() - started,
        bytes: report.fileBytes,
        details: { pageCount: report.pageCount, totalKey: report.totalKey, revision: report.revision },
      };
    }
    case "component-rates":
      return measureComponentRates(task.mebibytes);
  }
}

/**
 * The task's source and when its timing starts. The Kubernetes sources are opened inside the timing: the
 * product's take-snapshot step reads the pod again and opens the source (for a port-forward, its local
 * listener) on every run.
 */
async function openTaskSource(
  task: { etcdEndpoint: string } | { kind: string; kube: KubeApiAccess },
): Promise<{ source: SnapshotSource; started: number }> {
  if ("etcdEndpoint" in task) {
    const source = createGrpcSnapshotSource(createEtcdClient({ endpoint: task.etcdEndpoint }));
    return { source, started: performance.now() };
  }
  const started = performance.now();
  const kind = task.kind.startsWith("snapshot-port-forward-") ? "grpc" : "exec";
  return { source: await openKubeSource(task.kube, kind), started };
}

/**
 * The source of an etcd pod as the product's take-snapshot step opens it: the kubeconfig parsed as one
 * kept in a secret (CA and token embedded), the pod read again, the source of the configured kind.
 */
async function openKubeSource(kube: KubeApiAccess, kind: KubernetesSourceKind): Promise<SnapshotSource> {
  const config = kubeConfigFromText(await readFile(kube.kubeconfig, "utf8"), {
    origin: kube.kubeconfig,
    fromSecret: true,
  });
  const member = await readMemberPod(config, kube.pod);
  return openMemberSnapshotSource(config, member, { source: kind });
}

/** A sink that accepts at most `bytesPerSecond`: the source must be held back, not buffered. */
function createRateLimitedSink(bytesPerSecond: number): Writable {
  let accepted = 0;
  let started = 0;
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (started === 0) started = performance.now();
      accepted += chunk.length;
      // Wait only when ahead of schedule: timers cannot wait less than 1 ms, far longer than a chunk takes.
      const ahead = started + (accepted / bytesPerSecond) * 1000 - performance.now();
      if (ahead > 1) setTimeout(callback, ahead);
      else callback();
    },
  });
}

/** The in-memory rates of the per-byte work in the data path, to explain where time goes. */
function measureComponentRates(mebibytes: number): WorkerResult {
  const chunk = randomBytes(32 * 1024);
  const total = mebibytes * 1024 * 1024;
  const rate = (work: () => void) => {
    const started = performance.now();
    work();
    return total / 1024 / 1024 / ((performance.now() - started) / 1000);
  };
  const big = randomBytes(8 * 1024 * 1024);
  const started = performance.now();
  const details = {
    sha256In32KiBChunksMiBps: rate(() => {
      const hash = createHash("sha256");
      for (let done = 0; done < total; done += chunk.length) hash.update(chunk);
      hash.digest();
    }),
    crc32cIn8MiBPartsMiBps: rate(() => {
      let crc = 0;
      for (let done = 0; done < total; done += big.length) crc = crc32c(big, crc);
    }),
    copy32KiBChunksInto8MiBPartsMiBps: rate(() => {
      let offset = 0;
      for (let done = 0; done < total; done += chunk.length) {
        chunk.copy(big, offset);
        offset = (offset + chunk.length) % big.length;
      }
    }),
    crc32cImplementation,
  };
  return { durationMs: performance.now() - started, bytes: total, details };
}

const task = JSON.parse(process.argv[2] ?? "null") as WorkerTask | null;
if (!task) {
  process.stderr.write("usage: product-worker '<task as JSON>'\n");
  process.exit(2);
}
const result = await runTask(task);
process.stdout.write(`${JSON.stringify(result)}\n`);
