// The exec and port-forward snapshot sources end to end: a real local etcd, the stand-in API server
// (whose exec runs commands on this machine, so this machine's etcdctl runs "in the pod", and whose
// port-forward reaches the etcd client port), and s3rver. What is stored is verified and compared with a
// direct `etcdctl snapshot save` of the same revision; failures must leave nothing behind.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { createWriteStream, readdirSync } from "node:fs";
import { chmod, mkdir, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorNames } from "../../lambdas/core/errors.js";
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import {
  createExecSnapshotSource,
  type ExecSnapshotSourceOptions,
  snapshotScript,
} from "../../lambdas/core/kube/exec-snapshot-source.js";
import { runPodCommand } from "../../lambdas/core/kube/pod-exec.js";
import { createPortForwardSnapshotSource } from "../../lambdas/core/kube/port-forward-snapshot-source.js";
import { newSnapshotId } from "../../lambdas/core/snapshot/snapshot-naming.js";
import type { SnapshotSource } from "../../lambdas/core/snapshot/snapshot-source.js";
import {
  type StoredSnapshot,
  streamSnapshot,
  streamSnapshotToS3,
} from "../../lambdas/core/snapshot/stream-snapshot.js";
import { type SnapshotReport, verifySnapshotFile } from "../../lambdas/core/snapshot/verify-snapshot.js";
import { verifyStoredSnapshot } from "../../lambdas/core/snapshot/verify-stored-snapshot.js";
import { enableEtcdAuthWithReaderClient, etcdRootPassword } from "../support/etcd-auth.js";
import { type EtcdCluster, startEtcdCluster } from "../support/etcd-cluster.js";
import { createEtcdWriter } from "../support/etcd-writer.js";
import { findFreePort } from "../support/free-port.js";
import {
  type ExecRequest,
  type ExecStreamRecord,
  type KubeApiStandIn,
  type StandInPod,
  startKubeApiStandIn,
} from "../support/kube-api-server/index.js";
import { type LocalS3, startLocalS3 } from "../support/s3-server.js";
import { makeTempDir } from "../support/temp-dir.js";

const run = promisify(execFile);
const partSize = 5 * 1024 * 1024;
const namespace = "kube-system";

let etcd: EtcdCluster;
let s3: LocalS3;
let standIn: KubeApiStandIn;
let kubeConfig: KubeConfig;
let work: { path: string; remove: () => Promise<void> };
/** A snapshot file, for the exec handler that outputs part of it. */
let truncationSource: string;

/** A pod like kubeadm's etcd static pod, whose port 2379 reaches `clientUrl`'s port. */
function etcdPod(name: string, clientUrl: string, env?: Record<string, string>): StandInPod {
  return {
    name,
    namespace,
    labels: { component: "etcd", tier: "control-plane" },
    hostNetwork: true,
    containers: [{ name: "etcd", image: "registry.k8s.io/etcd:3.5.16-0", env }],
    portMap: { 2379: Number(new URL(clientUrl).port) },
  };
}

/** The stand-in's default handler (a local process in its own process group), except for one pod. */
function execHandler(request: ExecRequest): ChildProcess {
  let [executable, ...args] = request.command;
  if (request.pod.name === "etcd-truncating" && request.command[2] === snapshotScript) {
    // Not the script: part of a snapshot file, then exit 0.
    [executable, ...args] = ["head", "-c", String(3 * 1024 * 1024 + 32), truncationSource];
  }
  return spawn(executable as string, args, {
    env: { ...process.env, ...request.container.env },
    stdio: ["ignore", request.stdout ? "pipe" : "ignore", request.stderr ? "pipe" : "ignore"],
    detached: true,
  });
}

async function fakeBinary(name: string, script: string): Promise<string> {
  const directory = join(work.path, `fake-${name}`);
  await mkdir(directory, { recursive: true });
  await writeFile(join(directory, name), `#!/bin/sh\n${script}\n`);
  await chmod(join(directory, name), 0o755);
  return `${directory}:${process.env.PATH}`;
}

/** A temporary directory "in the pod", distinct per test so that leftovers are attributable. */
async function podTempDir(name: string): Promise<string> {
  const path = join(work.path, "pod-tmp", name);
  await mkdir(path, { recursive: true });
  return path;
}

beforeAll(async () => {
  [etcd, s3, work] = await Promise.all([startEtcdCluster(), startLocalS3(), makeTempDir("kube-sources")]);
  // About 24 MB: a stream that spans several parts and is still running when a pod is deleted.
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
  await writer.delete("/registry/pods/default/pod-7");
  truncationSource = join(work.path, "truncation-source.db");
  await run("etcdctl", [...etcd.etcdctlArgs(), "snapshot", "save", truncationSource]);
  const endpoint = etcd.endpoints[0] as string;
  standIn = await startKubeApiStandIn({
    pods: [
      etcdPod("etcd-0", endpoint),
      etcdPod("etcd-truncating", endpoint),
      etcdPod("etcd-short-cat", endpoint, {
        PATH: await fakeBinary("cat", 'exec head -c 3000000 "$@"'),
      }),
      etcdPod("etcd-full-tmp", endpoint, {
        // df -Pk of a nearly full 2 MiB tmpfs.
        PATH: await fakeBinary(
          "df",
          'echo "Filesystem     1024-blocks  Used Available Capacity Mounted on"; echo "tmpfs                2048  1048      1000      52% /tmp"',
        ),
      }),
      etcdPod("etcd-forbidden", endpoint),
      // A distroless image: no shell to run.
      etcdPod("etcd-distroless", endpoint, { PATH: "/nonexistent" }),
    ],
    execHandler,
    authorize: (request) => request.name !== "etcd-forbidden" || request.verb !== "create",
  });
  kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(standIn.kubeconfigPath);
});

afterAll(async () => {
  await standIn?.stop();
  await Promise.all([etcd?.stop(), s3?.stop()]);
  await work?.remove();
});

function destination(cluster: string) {
  return {
    client: s3.client,
    bucket: s3.bucket,
    prefix: "etcd",
    cluster,
    snapshotId: newSnapshotId(),
    partSize,
  };
}

async function execSource(
  pod: string,
  overrides: Partial<ExecSnapshotSourceOptions> & { cluster?: EtcdCluster } = {},
): Promise<SnapshotSource> {
  const cluster = overrides.cluster ?? etcd;
  return createExecSnapshotSource({
    kubeConfig,
    pod: { namespace, name: pod, container: "etcd" },
    etcdctl: { endpoint: cluster.endpoints[0] },
    tempDir: await podTempDir(pod),
    etcdDataDir: cluster.members[0]?.dataDir,
    commandTimeoutSeconds: 60,
    ...overrides,
  });
}

interface Reference {
  report: SnapshotReport;
  /** What `etcdctl snapshot status -w json` prints for the reference file. */
  etcdctl: { hash: number; revision: number; totalKey: number; totalSize: number };
}

/** A direct `etcdctl snapshot save` of `cluster`, its verification and etcdctl's own figures. */
async function referenceSnapshot(cluster: EtcdCluster, name: string): Promise<Reference> {
  const path = join(work.path, `${name}.db`);
  await run("etcdctl", [...cluster.etcdctlArgs(), "snapshot", "save", path]);
  const { stdout } = await run("etcdctl", ["snapshot", "status", "-w", "json", path]);
  return { report: await verifySnapshotFile(path), etcdctl: JSON.parse(stdout) };
}

/** Verifies what was stored and checks it is the reference snapshot, figure by figure. */
async function expectStoredEqualsReference(stored: StoredSnapshot, reference: Reference): Promise<void> {
  const verified = await verifyStoredSnapshot(s3.client, stored.object, stored);
  expect({
    hash: verified.hash,
    revision: verified.revision,
    totalKey: verified.totalKey,
    totalSize: verified.totalSize,
  }).toEqual(reference.etcdctl);
  expect(verified.sha256).toBe(reference.report.sha256);
  expect(verified.sha256).toBe(stored.sha256);
  expect(verified.fileBytes).toBe(reference.report.fileBytes);
  expect(verified.liveKeyCount).toBe(reference.report.liveKeyCount);
  expect(stored.revisionBefore).toBe(verified.revision);
  expect(stored.revisionAfter).toBe(verified.revision);
}

async function expectNothingLeftBehind(tempDir?: string): Promise<void> {
  expect(await s3.listOpenMultipartUploads()).toEqual([]);
  expect(await s3.listKeys("etcd/broken/")).toEqual([]);
  if (tempDir) {
    // The script's traps remove the file at once; after a SIGKILL its watcher does, within a second or so.
    const deadline = Date.now() + 5000;
    while ((await readdir(tempDir)).length > 0 && Date.now() < deadline) await sleep(100);
    expect(await readdir(tempDir)).toEqual([]);
  }
}

function lastExecRecord(pod: string): ExecStreamRecord | undefined {
  return standIn.streams
    .filter((record): record is ExecStreamRecord => record.kind === "exec" && record.pod === pod)
    .at(-1);
}

describe("the exec source", () => {
  it("stores the snapshot a direct `etcdctl snapshot save` takes at the same revision, and removes its temporary file", async () => {
    const reference = await referenceSnapshot(etcd, "exec-reference");
    const source = await execSource("etcd-0");
    const stored = await streamSnapshotToS3(source, destination("kube-exec")).finally(() => source.close());
    await expectStoredEqualsReference(stored, reference);
    expect(await readdir(await podTempDir("etcd-0"))).toEqual([]);
    // status() through exec reads the same member, ids exact beyond 2^53.
    const direct = await createEtcdClient({ endpoint: etcd.endpoints[0] as string }).status();
    const viaExec = await source.status();
    expect(viaExec).toMatchObject({
      memberId: direct.memberId,
      clusterId: direct.clusterId,
      leaderId: direct.leaderId,
      revision: direct.revision,
      version: "3.4.23",
    });
    expect(BigInt(viaExec.memberId)).toBeGreaterThan(2n ** 53n);
    // hashKV() through exec: `etcdctl endpoint hashkv`, the member's own answer.
    const directHash = await createEtcdClient({ endpoint: etcd.endpoints[0] as string }).hashKV(
      stored.revisionBefore,
    );
    expect(await source.hashKV(stored.revisionBefore)).toEqual({
      hash: directHash.hash,
      compactRevision: directHash.compactRevision,
    });
    const execs = standIn.requests.filter(
      (request) => request.subresource === "exec" && request.name === "etcd-0",
    );
    expect(execs.map((request) => request.protocol)).toEqual(execs.map(() => "v5.channel.k8s.io"));
    expect(execs[0]?.query.command?.slice(0, 2)).toEqual(["sh", "-c"]);
    expect(lastExecRecord("etcd-0")?.status?.status).toBe("Success");
  });

  it("pings its connection while the command is silent, so that idle timeouts on the way do not cut it", async () => {
    const output = await runPodCommand({
      kubeConfig,
      pod: { namespace, name: "etcd-0", container: "etcd" },
      command: ["sh", "-c", "sleep 1; echo done"],
      keepAliveMs: 100,
      describeFailure: (failure) => new Error(failure.kind),
    });
    expect(output.toString()).toBe("done\n");
    const last = standIn.requests.filter((request) => request.subresource === "exec").at(-1);
    expect(last?.query.command).toEqual(["sh", "-c", "sleep 1; echo done"]);
    expect(last?.pings).toBeGreaterThanOrEqual(5);
  });

  it("refuses a temporary directory in the etcd data directory, and localhost endpoints", async () => {
    const dataDir = etcd.members[0]?.dataDir as string;
    const options = { kubeConfig, pod: { namespace, name: "etcd-0", container: "etcd" } };
    expect(() =>
      createExecSnapshotSource({ ...options, tempDir: join(dataDir, "member", "tmp"), etcdDataDir: dataDir }),
    ).toThrow(
      expect.objectContaining({
        name: ErrorNames.InvalidInput,
        message: expect.stringContaining("etcd data directory"),
      }),
    );
    expect(() => createExecSnapshotSource({ ...options, tempDir: "/var/lib/etcd/" })).toThrow(
      expect.objectContaining({ name: ErrorNames.InvalidInput }),
    );
    expect(() =>
      createExecSnapshotSource({ ...options, etcdctl: { endpoint: "https://localhost:2379" } }),
    ).toThrow(expect.objectContaining({ message: expect.stringContaining("etcd-io/etcd#13166") }));
    expect(() => createExecSnapshotSource({ ...options, tempDir: "/var/lib/etcd/..tmp" })).toThrow(
      expect.objectContaining({ name: ErrorNames.InvalidInput }),
    );
    expect(() =>
      createExecSnapshotSource({ ...options, tempDir: "/var/lib/etcd/../etcd-backup" }),
    ).not.toThrow();
    expect(() => createExecSnapshotSource({ ...options, tempDir: "/var/lib/etcd-backup-tmp" })).not.toThrow();
  });

  it("fails with etcdctl's own words when the endpoint in the pod is wrong", async () => {
    const wrong = `http://127.0.0.1:${await findFreePort()}`;
    const source = await execSource("etcd-0", { etcdctl: { endpoint: wrong }, statusTimeoutSeconds: 2 });
    await expect(streamSnapshotToS3(source, destination("broken"))).rejects.toMatchObject({
      name: ErrorNames.EtcdUnavailable,
      message: expect.stringMatching(
        new RegExp(
          `etcdctl endpoint status in pod kube-system/etcd-0 .* exited with code 1; stderr: .*Failed to get the status of endpoint ${wrong}`,
          "s",
        ),
      ),
    });
    await expectNothingLeftBehind();
  });

  it("fails the stream with the script's exit code and stderr when etcdctl fails after the status was read", async () => {
    const tempDir = await podTempDir("etcd-0-failing");
    const good = await execSource("etcd-0");
    const wrong = await execSource("etcd-0", {
      etcdctl: { endpoint: `http://127.0.0.1:${await findFreePort()}` },
      statusTimeoutSeconds: 2,
      tempDir,
    });
    const source = { ...wrong, status: () => good.status() };
    await expect(streamSnapshotToS3(source, destination("broken"))).rejects.toMatchObject({
      name: ErrorNames.EtcdUnavailable,
      message: expect.stringMatching(
        /exited with code 10; stderr: .*Failed to get the status of endpoint.*etcd-backup: etcdctl endpoint status failed/s,
      ),
    });
    expect(lastExecRecord("etcd-0")?.status).toMatchObject({ reason: "NonZeroExitCode" });
    await expectNothingLeftBehind(tempDir);
  });

  for (const abrupt of [false, true]) {
    it(`fails with SnapshotStreamInterruptedError when the pod is deleted mid-stream${abrupt ? " and the connection cut without a status" : ""}, leaving nothing behind`, async () => {
      const pod = abrupt ? "etcd-doomed-abruptly" : "etcd-doomed";
      standIn.setPod(etcdPod(pod, etcd.endpoints[0] as string));
      const tempDir = await podTempDir(pod);
      const source = await execSource(pod);
      let filesAtDeletion: string[] = [];
      let deleted = false;
      const attempt = streamSnapshotToS3(source, destination("broken"), {
        onProgress: (bytes) => {
          if (deleted || bytes < 1024 * 1024) return;
          deleted = true;
          filesAtDeletion = readdirSync(tempDir);
          standIn.deletePod(pod, { abrupt });
        },
      });
      await expect(attempt).rejects.toMatchObject({
        name: ErrorNames.SnapshotStreamInterrupted,
        message: abrupt
          ? expect.stringContaining("without an exit status")
          : expect.stringContaining("exited with code 137"),
      });
      source.close();
      // The snapshot file was there while it streamed, and is gone although the script was SIGKILLed.
      expect(filesAtDeletion).toEqual([expect.stringMatching(/^etcd-backup-[0-9a-f]{16}\.db$/)]);
      await expectNothingLeftBehind(tempDir);
    });
  }

  it("fails with SnapshotCorruptError when the output is shorter than the saved file", async () => {
    const source = await execSource("etcd-short-cat");
    await expect(streamSnapshotToS3(source, destination("broken"))).rejects.toMatchObject({
      name: ErrorNames.SnapshotCorrupt,
      message: expect.stringMatching(
        /output was truncated: 3000000 bytes received, the saved file holds \d+/,
      ),
    });
    await expectNothingLeftBehind(await podTempDir("etcd-short-cat"));
  });

  it("fails with SnapshotCorruptError when a command exits 0 after part of a snapshot", async () => {
    const source = await execSource("etcd-truncating");
    await expect(streamSnapshotToS3(source, destination("broken"))).rejects.toMatchObject({
      name: ErrorNames.SnapshotCorrupt,
      message: expect.stringContaining(
        `exited 0 after ${3 * 1024 * 1024 + 32} bytes without announcing the snapshot's size`,
      ),
    });
    expect(lastExecRecord("etcd-truncating")?.status?.status).toBe("Success");
    await expectNothingLeftBehind();
  });

  it("refuses to save when the temporary directory has too little free space", async () => {
    const tempDir = await podTempDir("etcd-full-tmp");
    const source = await execSource("etcd-full-tmp");
    await expect(streamSnapshotToS3(source, destination("broken"))).rejects.toMatchObject({
      name: ErrorNames.InvalidInput,
      message: expect.stringMatching(
        new RegExp(
          `not enough free space in ${tempDir}: 1000 KiB available, \\d+ KiB needed for a database of \\d+ bytes`,
        ),
      ),
    });
    expect(lastExecRecord("etcd-full-tmp")?.status?.details?.causes).toEqual([
      { reason: "ExitCode", message: "11" },
    ]);
    await expectNothingLeftBehind(tempDir);
  });

  it("speaks v4.channel.k8s.io to an API server without the v5 translator (kubelet's own protocol)", async () => {
    const legacy = await startKubeApiStandIn({
      pods: [etcdPod("etcd-0", etcd.endpoints[0] as string)],
      execProtocols: ["v4.channel.k8s.io", "channel.k8s.io", ""],
    });
    try {
      const legacyConfig = new KubeConfig();
      legacyConfig.loadFromFile(legacy.kubeconfigPath);
      const source = await execSource("etcd-0", {
        kubeConfig: legacyConfig,
        tempDir: await podTempDir("legacy"),
      });
      const streamed = await streamSnapshot(
        source,
        () => new Writable({ write: (_chunk, _encoding, done) => done() }),
      );
      expect(streamed.bytes % 512).toBe(32);
      const wrong = await execSource("etcd-0", {
        kubeConfig: legacyConfig,
        etcdctl: { endpoint: `http://127.0.0.1:${await findFreePort()}` },
        statusTimeoutSeconds: 1,
      });
      await expect(wrong.status()).rejects.toMatchObject({
        name: ErrorNames.EtcdUnavailable,
        message: expect.stringContaining("exited with code 1; stderr:"),
      });
      // status before, the stream, status after, and the failing status.
      const protocols = legacy.requests
        .filter((request) => request.subresource === "exec")
        .map((request) => request.protocol);
      expect(protocols).toEqual(Array(4).fill("v4.channel.k8s.io"));
    } finally {
      await legacy.stop();
    }
  });

  it("fails with InvalidInputError, pointing to the port-forward source, when the container has no shell", async () => {
    const source = await execSource("etcd-distroless");
    await expect(source.status()).rejects.toMatchObject({
      name: ErrorNames.InvalidInput,
      message: expect.stringMatching(
        /executable file not found in \$PATH.*distroless etcd image needs the grpc source through a port-forward/,
      ),
    });
  });

  it("fails with KubernetesAccessDeniedError when RBAC forbids pods/exec", async () => {
    const source = await execSource("etcd-forbidden");
    await expect(source.status()).rejects.toMatchObject({
      name: ErrorNames.KubernetesAccessDenied,
      message: expect.stringContaining('cannot create resource "pods/exec"'),
    });
  });
});

describe("the exec source with a slow sink", () => {
  const databaseBytes = 200 * 1024 * 1024;

  /**
   * A 200 MiB snapshot-shaped file (a database of whole 512-byte blocks and its sha256 trailer): filling a
   * real etcd with 200 MB takes ~50 s here, and flow control does not depend on what the bytes mean.
   */
  async function writeLargeSnapshotFile(path: string): Promise<void> {
    const block = randomBytes(1024 * 1024);
    const hash = createHash("sha256");
    const file = createWriteStream(path);
    for (let written = 0; written < databaseBytes; written += block.length) {
      block.writeUInt32LE(written, 0);
      hash.update(block);
      if (!file.write(Buffer.from(block))) await once(file, "drain");
    }
    file.end(hash.digest());
    await once(file, "close");
  }

  it("keeps what is buffered between the pod and the sink bounded: the WebSocket is paused", async () => {
    const largeSnapshot = join(work.path, "large-snapshot.db");
    await writeLargeSnapshotFile(largeSnapshot);
    // etcdctl of a member with a large database: the real status, and a save that copies the large file
    // through <path>.part as etcdctl does.
    const path = await fakeBinary(
      "etcdctl",
      `case " $* " in *" snapshot save "*) for target; do :; done; cp "${largeSnapshot}" "$target.part" && mv "$target.part" "$target" && echo "Snapshot saved at $target";; *) exec /usr/bin/etcdctl "$@";; esac`,
    );
    standIn.setPod(etcdPod("etcd-large", etcd.endpoints[0] as string, { PATH: path }));
    const source = await execSource("etcd-large");
    let consumed = 0;
    let maxLag = 0;
    let record: ExecStreamRecord | undefined;
    const slowSink = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _encoding, callback) {
        consumed += chunk.length;
        // Bytes the stand-in took from the command's pipes (stdout and a little stderr) that the sink has
        // not had yet: the stand-in's 1 MiB queue, socket buffers, and whatever this process holds.
        record ??= lastExecRecord("etcd-large");
        maxLag = Math.max(maxLag, (record?.bytesFromSource ?? 0) - consumed);
        setTimeout(callback, 1);
      },
    });
    const memoryBefore = process.memoryUsage().arrayBuffers;
    let peakArrayBuffers = memoryBefore;
    const sampler = setInterval(() => {
      peakArrayBuffers = Math.max(peakArrayBuffers, process.memoryUsage().arrayBuffers);
    }, 50);
    const streamed = await streamSnapshot(source, () => slowSink).finally(() => {
      clearInterval(sampler);
      source.close();
    });
    console.info(
      `exec with a slow sink: ${(streamed.bytes / 1048576).toFixed(0)} MiB in ${streamed.durationMs} ms; at most ${(maxLag / 1048576).toFixed(1)} MiB between the command's pipe and the sink; array buffers grew by at most ${((peakArrayBuffers - memoryBefore) / 1048576).toFixed(1)} MiB`,
    );
    expect(streamed.bytes).toBe(databaseBytes + 32);
    expect(consumed).toBe(streamed.bytes);
    expect(record?.bytesFromSource).toBeGreaterThanOrEqual(streamed.bytes);
    expect(maxLag).toBeLessThan(16 * 1024 * 1024);
    expect(await readdir(await podTempDir("etcd-large"))).toEqual([]);
  });
});

describe("the grpc source through a port-forward", () => {
  it("stores the snapshot a direct `etcdctl snapshot save` takes at the same revision", async () => {
    const reference = await referenceSnapshot(etcd, "port-forward-reference");
    const source = await createPortForwardSnapshotSource({ kubeConfig, pod: { namespace, name: "etcd-0" } });
    let viaTunnel: Awaited<ReturnType<typeof source.hashKV>> | undefined;
    const stored = await streamSnapshotToS3(source, destination("kube-port-forward"))
      .then(async (result) => {
        viaTunnel = await source.hashKV(result.revisionBefore);
        return result;
      })
      .finally(() => source.close());
    await expectStoredEqualsReference(stored, reference);
    const directHash = await createEtcdClient({ endpoint: etcd.endpoints[0] as string }).hashKV(
      stored.revisionBefore,
    );
    expect(viaTunnel).toEqual(directHash);
    expect(source.warnings).toEqual([]);
    expect(source.tunnel.connectionCount).toBeGreaterThanOrEqual(1);
    const forwards = standIn.requests.filter((request) => request.subresource === "portforward");
    expect(forwards.at(-1)).toMatchObject({
      name: "etcd-0",
      query: { ports: ["2379"] },
      protocol: "v4.channel.k8s.io",
    });
  });

  it("fails with SnapshotStreamInterruptedError, with the kubelet's error text, when the pod is deleted mid-stream", async () => {
    standIn.setPod(etcdPod("etcd-doomed-forward", etcd.endpoints[0] as string));
    const source = await createPortForwardSnapshotSource({
      kubeConfig,
      pod: { namespace, name: "etcd-doomed-forward" },
    });
    let deleted = false;
    const attempt = streamSnapshotToS3(source, destination("broken"), {
      onProgress: (bytes) => {
        if (deleted || bytes < 1024 * 1024) return;
        deleted = true;
        standIn.deletePod("etcd-doomed-forward");
      },
    });
    await expect(attempt).rejects.toMatchObject({
      name: ErrorNames.SnapshotStreamInterrupted,
      message: expect.stringMatching(
        /port-forward: .*error forwarding port 2379 to pod .*connection reset by peer/,
      ),
    });
    source.close();
    await expectNothingLeftBehind();
  });

  it("fails with KubernetesAccessDeniedError when RBAC forbids pods/portforward", async () => {
    const source = await createPortForwardSnapshotSource({
      kubeConfig,
      pod: { namespace, name: "etcd-forbidden" },
      callTimeoutMs: 3000,
    });
    try {
      await expect(source.status()).rejects.toMatchObject({
        name: ErrorNames.KubernetesAccessDenied,
        message: expect.stringContaining('cannot create resource "pods/portforward"'),
      });
    } finally {
      source.close();
    }
  });
});

describe("both sources against etcd with mutual TLS", () => {
  let secure: EtcdCluster;
  let reference: Reference;

  beforeAll(async () => {
    secure = await startEtcdCluster({ tls: true });
    await createEtcdWriter(secure).putMany(
      Array.from({ length: 100 }, (_, index) => [
        `/registry/secrets/default/s-${index}`,
        randomBytes(10_000),
      ]),
    );
    standIn.setPod(etcdPod("etcd-tls-0", secure.endpoints[0] as string));
    reference = await referenceSnapshot(secure, "tls-reference");
  });

  afterAll(async () => {
    await secure?.stop();
  });

  /** etcdctl in the pod with the TLS cluster's certificate paths. */
  const secureEtcdctl = () => {
    const certificates = secure.certificates as NonNullable<EtcdCluster["certificates"]>;
    return {
      endpoint: secure.endpoints[0],
      cacert: certificates.caFile,
      cert: certificates.clientCertFile,
      key: certificates.clientKeyFile,
    };
  };

  it("port-forward: checks the server certificate under another name and warns that the client certificate expires", async () => {
    const tls = { ...secure.clientTls, serverName: "localhost" };
    const warnings: string[] = [];
    const source = await createPortForwardSnapshotSource({
      kubeConfig,
      pod: { namespace, name: "etcd-tls-0" },
      tls,
      onWarning: (warning) => warnings.push(warning.message),
    });
    const stored = await streamSnapshotToS3(source, destination("kube-tls")).finally(() => source.close());
    await expectStoredEqualsReference(stored, reference);
    // The test certificates are valid for two days.
    expect(source.warnings).toMatchObject([
      { code: "ClientCertificateExpiresSoon", daysLeft: 1, subject: "CN=etcd-backup" },
    ]);
    expect(warnings).toEqual([source.warnings[0]?.message]);

    const wrongName = await createPortForwardSnapshotSource({
      kubeConfig,
      pod: { namespace, name: "etcd-tls-0" },
      tls: { ...tls, serverName: "etcd.example.com" },
      callTimeoutMs: 3000,
    });
    // A name the certificate does not carry is a setting to fix, not an outage: not retried.
    await expect(wrongName.status()).rejects.toMatchObject({ name: ErrorNames.EtcdAccessDenied });
    wrongName.close();
  });

  it("exec: passes the certificate paths in the pod to etcdctl", async () => {
    const source = await execSource("etcd-tls-0", { cluster: secure, etcdctl: secureEtcdctl() });
    const stored = await streamSnapshotToS3(source, destination("kube-tls")).finally(() => source.close());
    await expectStoredEqualsReference(stored, reference);
    expect((await stat(join(work.path, "tls-reference.db"))).size).toBe(stored.bytes);
  });

  // Last: it turns etcd's auth on. The client certificate's CN (etcd-backup) is then its etcd user, a
  // reader without the root role that Maintenance.Snapshot requires.
  it("both: a snapshot etcd's RBAC refuses to the client's user is access denied, which is not retried; exec logs in as root with the pod's password", async () => {
    await enableEtcdAuthWithReaderClient(secure);
    const exec = await execSource("etcd-tls-0", { cluster: secure, etcdctl: secureEtcdctl() });
    await expect(
      streamSnapshotToS3(exec, destination("kube-rbac")).finally(() => exec.close()),
    ).rejects.toMatchObject({
      name: ErrorNames.EtcdAccessDenied,
      message: expect.stringMatching(/permission denied/),
    });
    const forwarded = await createPortForwardSnapshotSource({
      kubeConfig,
      pod: { namespace, name: "etcd-tls-0" },
      tls: { ...secure.clientTls, serverName: "localhost" },
    });
    await expect(
      streamSnapshotToS3(forwarded, destination("kube-rbac")).finally(() => forwarded.close()),
    ).rejects.toMatchObject({
      name: ErrorNames.EtcdAccessDenied,
      message: expect.stringMatching(/refused the snapshot: .*permission denied/),
    });

    // Bitnami's chart turns auth on and gives its container the root password: exec logs in as root with
    // it, in the pod (discovery names the variable), and the snapshot is taken.
    standIn.setPod(
      etcdPod("etcd-tls-auth", secure.endpoints[0] as string, { ETCD_ROOT_PASSWORD: etcdRootPassword }),
    );
    const withPassword = await execSource("etcd-tls-auth", {
      cluster: secure,
      etcdctl: secureEtcdctl(),
      rootPasswordEnv: "ETCD_ROOT_PASSWORD",
    });
    expect((await withPassword.hashKV((await withPassword.status()).revision)).hash).toBeGreaterThan(0);
    const stored = await streamSnapshotToS3(withPassword, destination("kube-auth")).finally(() =>
      withPassword.close(),
    );
    // Turning auth on wrote etcd's auth buckets, not keys: the same revision, another file.
    expect(stored.revisionBefore).toBe(reference.etcdctl.revision);
    const verified = await verifyStoredSnapshot(s3.client, stored.object, stored);
    expect(verified).toMatchObject({ revision: reference.etcdctl.revision, sha256: stored.sha256 });
    expect(verified.liveKeyCount).toBe(reference.report.liveKeyCount);
  });
});
