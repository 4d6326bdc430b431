// The stand-in Kubernetes API server, checked against the real clients (kubectl 1.32 and
// @kubernetes/client-node) and frame by frame against FACTS.md §5, with the real local etcd behind it.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { createServer, type Server, type Socket } from "node:net";
import { PassThrough } from "node:stream";
import { text } from "node:stream/consumers";
import { setTimeout as sleep } from "node:timers/promises";
import { CoreV1Api, Exec, KubeConfig, PortForward, type V1Status } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EtcdCluster, startEtcdCluster } from "../support/etcd-cluster.js";
import { createEtcdWriter } from "../support/etcd-writer.js";
import { findFreePort } from "../support/free-port.js";
import {
  type ExecStreamRecord,
  type KubeApiStandIn,
  messageBytes,
  type PortForwardStreamRecord,
  type StandInPod,
  startKubeApiStandIn,
  WebSocket,
  type WebSocketConnection,
} from "../support/kube-api-server/index.js";
import { makeTempDir } from "../support/temp-dir.js";
import { createTestCertificates } from "../support/test-certificates.js";

const readerToken = "reader-token";
const podPort = 2379;
const etcdPodPort = 0x094b; // 2379: its little-endian bytes are [0x4b, 0x09]

let etcd: EtcdCluster;
let standIn: KubeApiStandIn;
let cacheDir: { path: string; remove: () => Promise<void> };
const localServers: Server[] = [];
const ports = { echo: 0, refused: 0, bulk: 0, sink: 0 };
const sinkConnections: Socket[] = [];
const bulkBytes = 64 * 1024 * 1024;

function etcdPod(name: string, clientPort: number, extra: Partial<StandInPod> = {}): StandInPod {
  return {
    name,
    namespace: "kube-system",
    labels: { component: "etcd", tier: "control-plane" },
    annotations: { "kubeadm.kubernetes.io/etcd.advertise-client-urls": "https://127.0.0.1:2379" },
    hostNetwork: true,
    containers: [
      {
        name: "etcd",
        image: "registry.k8s.io/etcd:3.5.16-0",
        command: ["etcd", "--advertise-client-urls=https://127.0.0.1:2379", "--data-dir=/var/lib/etcd"],
        volumeMounts: [{ name: "etcd-data", mountPath: "/var/lib/etcd" }],
      },
    ],
    volumes: [{ name: "etcd-data", hostPath: "/var/lib/etcd" }],
    portMap: { [podPort]: clientPort },
    ...extra,
  };
}

/** A "pod" port: connections the stand-in cuts may reset, which these servers have nothing to say about. */
async function listen(server: Server): Promise<number> {
  server.on("connection", (socket) => socket.on("error", () => {}));
  localServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as { port: number }).port;
}

beforeAll(async () => {
  etcd = await startEtcdCluster();
  const etcdClientPort = Number(new URL(etcd.endpoints[0] as string).port);
  ports.echo = await listen(createServer((socket) => socket.pipe(socket)));
  ports.bulk = await listen(createServer((socket) => socket.end(Buffer.alloc(bulkBytes, 7))));
  ports.sink = await listen(
    createServer((socket) => {
      // A pod that does not read until told to.
      socket.pause();
      sinkConnections.push(socket);
    }),
  );
  ports.refused = await findFreePort();
  cacheDir = await makeTempDir("kubectl-cache");
  standIn = await startKubeApiStandIn({
    pods: [
      etcdPod("etcd-x", etcdClientPort),
      etcdPod("etcd-y", etcdClientPort, { ready: false, labels: { component: "etcd", member: "second" } }),
      {
        name: "kube-apiserver-x",
        namespace: "kube-system",
        labels: { component: "kube-apiserver", tier: "control-plane" },
        containers: [{ name: "kube-apiserver" }, { name: "sidecar" }],
      },
      {
        name: "relay",
        namespace: "default",
        containers: [{ name: "relay" }],
        portMap: { 7000: ports.echo, 7001: ports.refused, 7002: ports.bulk, 7003: ports.sink },
      },
    ],
    secrets: [{ name: "etcd-client", namespace: "kube-system", data: { "ca.crt": "pem" } }],
    auth: {
      bearerTokens: ["backup-token", { token: readerToken, user: "reader", groups: ["readers"] }],
      clientCertificates: true,
    },
    // "reader" may read pods and open the exec handshake (get), but not create pods/exec.
    authorize: (request) =>
      request.user !== "reader" ||
      !request.resourceRequest ||
      (request.resource === "pods" && request.verb !== "create" && request.verb !== "delete"),
  });
});

afterAll(async () => {
  for (const socket of sinkConnections) socket.destroy();
  await standIn?.stop();
  for (const server of localServers) server.close();
  await etcd?.stop();
  await cacheDir?.remove();
});

// ---- helpers --------------------------------------------------------------------------------------

interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

function kubectl(args: string[], kubeconfigPath = standIn.kubeconfigPath): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(
      "kubectl",
      ["--kubeconfig", kubeconfigPath, "--cache-dir", cacheDir.path, ...args],
      { timeout: 30_000 },
      (error, stdout, stderr) => {
        const exitCode = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        resolve({ stdout, stderr, exitCode });
      },
    );
  });
}

function getJson(
  path: string,
  credentials: { token?: string; cert?: Buffer | string; key?: Buffer | string } = { token: standIn.token },
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (credentials.token) headers.authorization = `Bearer ${credentials.token}`;
    const req = httpsRequest(
      `${standIn.url}${path}`,
      { ca: standIn.caData, cert: credentials.cert, key: credentials.key, headers },
      (res) => {
        void text(res).then(
          (body) => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) }),
          reject,
        );
      },
    );
    req.on("error", reject);
    req.end();
  });
}

class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`upgrade refused with ${status}: ${body}`);
  }
}

/** A raw WebSocket client that queues every message, so tests can read frames one by one. */
async function openStream(
  path: string,
  protocols: string[],
  token: string | undefined = standIn.token,
): Promise<{
  socket: WebSocketConnection;
  next: (timeoutMs?: number) => Promise<Buffer>;
  /** Stops queueing: returns the frames queued so far and hands every later one to `listener`. */
  redirect: (listener: (frame: Buffer) => void) => Buffer[];
  closed: Promise<number>;
}> {
  const socket = new WebSocket(`${standIn.url.replace(/^https/, "wss")}${path}`, protocols, {
    ca: standIn.caData,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const queue: Buffer[] = [];
  const waiters: Array<(frame: Buffer | undefined) => void> = [];
  let isClosed = false;
  let redirected: ((frame: Buffer) => void) | undefined;
  socket.on("message", (data, isBinary) => {
    const frame = isBinary ? messageBytes(data) : Buffer.from(data.toString(), "latin1");
    if (redirected) return redirected(frame);
    const waiter = waiters.shift();
    if (waiter) waiter(frame);
    else queue.push(frame);
  });
  const closed = new Promise<number>((resolve) => {
    socket.on("close", (code) => {
      isClosed = true;
      for (const waiter of waiters.splice(0)) waiter(undefined);
      resolve(code);
    });
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("open", resolve);
    socket.once("error", reject);
    socket.once("unexpected-response", (_request, response) => {
      void text(response).then((body) => reject(new UpgradeRefused(response.statusCode ?? 0, body)));
    });
  });
  const next = async (timeoutMs = 10_000) => {
    const queued = queue.shift();
    if (queued) return queued;
    if (isClosed) throw new Error("the stream closed");
    const frame = await Promise.race([
      new Promise<Buffer | undefined>((resolve) => waiters.push(resolve)),
      sleep(timeoutMs).then(() => {
        throw new Error(`no frame within ${timeoutMs} ms`);
      }),
    ]);
    if (!frame) throw new Error("the stream closed");
    return frame;
  };
  const redirect = (listener: (frame: Buffer) => void) => {
    redirected = listener;
    return queue.splice(0);
  };
  return { socket, next, redirect, closed };
}

function execPath(
  pod: string,
  command: string[],
  flags: Record<string, string>,
  namespace = "kube-system",
): string {
  const query = new URLSearchParams(flags);
  for (const part of command) query.append("command", part);
  return `/api/v1/namespaces/${namespace}/pods/${pod}/exec?${query}`;
}

/** Reads an exec stream to its end: the frames as received, the stdout/stderr bytes, the status text. */
async function readExec(stream: Awaited<ReturnType<typeof openStream>>) {
  const frames: Buffer[] = [];
  for (;;) {
    try {
      frames.push(await stream.next());
    } catch {
      break;
    }
  }
  const payload = (channel: number) =>
    Buffer.concat(frames.filter((frame) => frame[0] === channel).map((frame) => frame.subarray(1)));
  return {
    frames,
    stdout: payload(1).toString("utf8"),
    stderr: payload(2).toString("utf8"),
    status: payload(3).toString("utf8"),
    closeCode: await stream.closed,
  };
}

/** Waits until a counter stops moving (the same value 300 ms apart) and returns it. */
async function waitUntilStalled(read: () => number, timeoutMs = 15_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let previous = read();
  for (;;) {
    await sleep(300);
    const current = read();
    if (current === previous && current > 0) return current;
    if (Date.now() > deadline) throw new Error(`still moving after ${timeoutMs} ms: ${current}`);
    previous = current;
  }
}

function lastStream<T extends ExecStreamRecord | PortForwardStreamRecord>(kind: T["kind"]): T {
  const record = standIn.streams.filter((stream) => stream.kind === kind).at(-1);
  if (!record) throw new Error(`no ${kind} stream was recorded`);
  return record as T;
}

function clientNodeConfig(kubeconfigPath = standIn.kubeconfigPath): KubeConfig {
  const config = new KubeConfig();
  config.loadFromFile(kubeconfigPath);
  return config;
}

// ---- tests --------------------------------------------------------------------------------------

describe("the stand-in Kubernetes API server with the real kubectl", () => {
  beforeAll(async () => {
    const version = await kubectl(["version", "--client"]);
    expect(
      version.exitCode,
      `kubectl (>= 1.30, which execs over WebSocket) must be on PATH: ${version.stderr}`,
    ).toBe(0);
    const minor = Number(/Client Version: v1\.(\d+)/.exec(version.stdout)?.[1]);
    expect(
      minor,
      `kubectl ${version.stdout.trim()} is older than 1.30 and execs over SPDY`,
    ).toBeGreaterThanOrEqual(30);
  });

  it("execs etcdctl against the real etcd, over v5.channel.k8s.io, authorized for get and create", async () => {
    await createEtcdWriter(etcd).put("/stand-in/key", "through-kubectl");
    const result = await kubectl([
      "exec",
      "-n",
      "kube-system",
      "etcd-x",
      "-c",
      "etcd",
      "--",
      "etcdctl",
      `--endpoints=${etcd.endpoints[0]}`,
      "get",
      "/stand-in/key",
      "--print-value-only",
    ]);
    expect(result).toEqual({ stdout: "through-kubectl\n", stderr: "", exitCode: 0 });
    const version = await kubectl([
      "exec",
      "-n",
      "kube-system",
      "etcd-x",
      "-c",
      "etcd",
      "--",
      "etcdctl",
      "version",
    ]);
    expect(version.stdout).toMatch(/^etcdctl version: 3\.\d+\.\d+\n/);

    const execRequest = standIn.requests.filter((request) => request.subresource === "exec").at(-1);
    expect(execRequest).toMatchObject({
      method: "GET",
      verb: "get",
      authorizedVerbs: ["get", "create"],
      upgrade: "websocket",
      protocol: "v5.channel.k8s.io",
      status: 101,
      query: { command: ["etcdctl", "version"], container: ["etcd"] },
    });
  });

  it("passes a failing command's stdout, stderr and exit code through", async () => {
    const result = await kubectl([
      "exec",
      "-n",
      "kube-system",
      "etcd-x",
      "-c",
      "etcd",
      "--",
      "sh",
      "-c",
      "echo to-stdout; echo to-stderr >&2; exit 3",
    ]);
    expect(result).toEqual({
      stdout: "to-stdout\n",
      stderr: "to-stderr\ncommand terminated with exit code 3\n",
      exitCode: 3,
    });
  });

  it("rejects an unknown container with the API server's BadRequest", async () => {
    const result = await kubectl(["exec", "-n", "kube-system", "etcd-x", "-c", "etcd-typo", "--", "true"]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe(
      "Error from server (BadRequest): container etcd-typo is not valid for pod etcd-x\n",
    );
  });

  it("lists pods by label selector as a server-side table", async () => {
    const result = await kubectl(["get", "pods", "-n", "kube-system", "-l", "component=etcd,member!=second"]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\n/);
    expect(result.stdout.trim().split("\n").slice(1)).toEqual([
      expect.stringMatching(/^etcd-x\s+1\/1\s+Running\s+0\s+/),
    ]);
    const missing = await kubectl(["get", "pod", "-n", "kube-system", "etcd-z"]);
    expect(missing.stderr).toBe('Error from server (NotFound): pods "etcd-z" not found\n');
  });

  it("authenticates kubectl by client certificate", async () => {
    const kubeconfigPath = await standIn.writeKubeconfig({ clientCertificate: true });
    const result = await kubectl(["get", "pods", "-n", "kube-system", "-o", "name"], kubeconfigPath);
    expect(result.stdout).toBe("pod/etcd-x\npod/etcd-y\npod/kube-apiserver-x\n");
    expect(standIn.requests.at(-1)).toMatchObject({ user: "etcd-backup", verb: "list", status: 200 });
  });
});

describe("the stand-in Kubernetes API server with @kubernetes/client-node", () => {
  const execThroughClientNode = async (command: string[]) => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const output = Promise.all([text(stdout), text(stderr)]);
    const status = await new Promise<V1Status>((resolve, reject) => {
      new Exec(clientNodeConfig())
        .exec("kube-system", "etcd-x", "etcd", command, stdout, stderr, null, false, resolve)
        .catch(reject);
    });
    const [out, err] = await output;
    return { stdout: out, stderr: err, status };
  };

  it("execs a command: its output, then a Success status", async () => {
    const result = await execThroughClientNode([
      "etcdctl",
      `--endpoints=${etcd.endpoints[0]}`,
      "endpoint",
      "health",
    ]);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/is healthy: successfully committed proposal/);
    expect(result.status).toEqual({ metadata: {}, status: "Success" });
  });

  it("execs a failing command: a NonZeroExitCode status with the exit code as its cause", async () => {
    const result = await execThroughClientNode(["sh", "-c", "printf partial; exit 42"]);
    expect(result.stdout).toBe("partial");
    expect(result.status).toEqual({
      metadata: {},
      status: "Failure",
      message: "command terminated with non-zero exit code: command terminated with exit code 42",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "42" }] },
    });
  });

  it("lists pods with equality and set-based label selectors", async () => {
    const api = clientNodeConfig().makeApiClient(CoreV1Api);
    const names = async (labelSelector: string) =>
      (await api.listNamespacedPod({ namespace: "kube-system", labelSelector })).items.map(
        (pod) => pod.metadata?.name,
      );
    expect(await names("component=etcd")).toEqual(["etcd-x", "etcd-y"]);
    expect(await names("component==etcd,member!=second")).toEqual(["etcd-x"]);
    expect(await names("member")).toEqual(["etcd-y"]);
    expect(await names("!member,tier=control-plane")).toEqual(["etcd-x", "kube-apiserver-x"]);
    expect(await names("component in (kube-apiserver, scheduler)")).toEqual(["kube-apiserver-x"]);
    expect(await names("component=kube-scheduler")).toEqual([]);

    const list = await api.listNamespacedPod({ namespace: "kube-system", labelSelector: "member=second" });
    const pod = list.items[0];
    expect(pod?.status?.conditions?.find((condition) => condition.type === "Ready")?.status).toBe("False");
    expect(pod?.spec?.containers[0]?.command).toContain("--data-dir=/var/lib/etcd");
    expect(pod?.metadata?.creationTimestamp).toBeInstanceOf(Date);
  });

  it("tunnels etcdctl to the real etcd through PortForward (v4.channel.k8s.io)", async () => {
    const forward = new PortForward(clientNodeConfig());
    const sockets: Socket[] = [];
    const local = createServer((socket) => {
      sockets.push(socket);
      // etcdctl may reset its connection as it exits, and client-node's PortForward listens for no
      // socket error: unheard, the reset would be an uncaught exception.
      socket.on("error", () => {});
      void forward.portForward("kube-system", "etcd-x", [podPort], socket, null, socket);
    });
    const localPort = await new Promise<number>((resolve) =>
      local.listen(0, "127.0.0.1", () => resolve((local.address() as { port: number }).port)),
    );
    try {
      await createEtcdWriter(etcd).put("/stand-in/forwarded", "through-port-forward");
      const result = await new Promise<CommandResult>((resolve) => {
        execFile(
          "etcdctl",
          [`--endpoints=http://127.0.0.1:${localPort}`, "get", "/stand-in/forwarded", "--print-value-only"],
          { timeout: 20_000 },
          (error, stdout, stderr) => resolve({ stdout, stderr, exitCode: error ? 1 : 0 }),
        );
      });
      expect(result).toEqual({ stdout: "through-port-forward\n", stderr: "", exitCode: 0 });
      const record = lastStream<PortForwardStreamRecord>("portforward");
      expect(record).toMatchObject({
        pod: "etcd-x",
        ports: [podPort],
        protocol: "v4.channel.k8s.io",
        errors: [],
      });
      expect(record.bytesFromSource).toBeGreaterThan(0);
    } finally {
      for (const socket of sockets) socket.destroy();
      local.close();
    }
  });
});

describe("the exec protocol, frame by frame", () => {
  it("v5: an empty first frame on stdout, the output, the status on channel 3, then a normal close", async () => {
    const stream = await openStream(
      execPath("etcd-x", ["sh", "-c", "printf out; printf err >&2"], { stdout: "true", stderr: "true" }),
      ["v5.channel.k8s.io"],
    );
    expect(stream.socket.protocol).toBe("v5.channel.k8s.io");
    const result = await readExec(stream);
    expect(result.frames[0]).toEqual(Buffer.from([1]));
    expect(result.stdout).toBe("out");
    expect(result.stderr).toBe("err");
    expect(result.status).toBe('{"metadata":{},"status":"Success"}');
    expect(result.frames.at(-1)?.[0]).toBe(3);
    expect(result.closeCode).toBe(1000);
  });

  it("v5: stdin reaches the command, and [255, 0] closes it so the command sees end of file", async () => {
    const stream = await openStream(
      execPath("etcd-x", ["sh", "-c", "wc -c; cat >/dev/null; echo done"], { stdin: "true", stdout: "true" }),
      ["v5.channel.k8s.io"],
    );
    stream.socket.send(Buffer.concat([Buffer.from([0]), Buffer.alloc(100_000, 1)]), { binary: true });
    stream.socket.send(Buffer.from([0, 104, 105]), { binary: true });
    stream.socket.send(Buffer.from([255, 0]), { binary: true });
    const result = await readExec(stream);
    expect(result.stdout).toBe("100002\ndone\n");
    expect(result.status).toBe('{"metadata":{},"status":"Success"}');
  });

  it("stops reading stdin frames while the command does not read its input, then delivers every byte", async () => {
    const stream = await openStream(
      execPath("etcd-x", ["sh", "-c", "sleep 2; wc -c"], { stdin: "true", stdout: "true" }),
      ["v5.channel.k8s.io"],
    );
    const chunk = Buffer.concat([Buffer.from([0]), Buffer.alloc(64 * 1024, 5)]);
    const chunks = 512; // 32 MiB
    for (let index = 0; index < chunks; index++) stream.socket.send(chunk, { binary: true });
    stream.socket.send(Buffer.from([255, 0]), { binary: true });
    const record = lastStream<ExecStreamRecord>("exec");
    await sleep(500);
    expect(record.bytesFromClient).toBeLessThan((chunks * 64 * 1024) / 2);
    expect(record.peakQueuedToSource).toBeLessThan(2 * 1024 * 1024);
    const result = await readExec(stream);
    expect(result.stdout).toBe(`${chunks * 64 * 1024}\n`);
    expect(result.status).toBe('{"metadata":{},"status":"Success"}');
  });

  it("v4 (the kubelet's path): the first offered protocol it supports, and the kubelet's wording of an exit code", async () => {
    const stream = await openStream(execPath("etcd-x", ["sh", "-c", "exit 7"], { stdout: "1" }), [
      "v3.channel.k8s.io",
      "v4.channel.k8s.io",
      "channel.k8s.io",
    ]);
    expect(stream.socket.protocol).toBe("v4.channel.k8s.io");
    const result = await readExec(stream);
    expect(JSON.parse(result.status)).toEqual({
      metadata: {},
      status: "Failure",
      message:
        "command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "7" }] },
    });
  });

  it("v4.base64: text frames of a channel digit and base64, and an InternalError for a missing executable", async () => {
    const stream = await openStream(execPath("etcd-x", ["no-such-binary"], { stdout: "true" }), [
      "v4.base64.channel.k8s.io",
    ]);
    const first = await stream.next();
    expect(first.toString("latin1")).toBe("1");
    const statusFrame = (await stream.next()).toString("latin1");
    expect(statusFrame[0]).toBe("3");
    const status = JSON.parse(Buffer.from(statusFrame.slice(1), "base64").toString("utf8"));
    expect(status).toMatchObject({ status: "Failure", reason: "InternalError", code: 500 });
    expect(status.message).toMatch(
      /^Internal error occurred: error executing command in container: .*exec: "no-such-binary": executable file not found in \$PATH/,
    );
  });

  it("channel.k8s.io (v1): the error text alone on channel 3, nothing on success", async () => {
    const failing = await readExec(
      await openStream(execPath("etcd-x", ["sh", "-c", "exit 2"], { stdout: "true" }), ["channel.k8s.io"]),
    );
    expect(failing.status).toBe(
      "command terminated with non-zero exit code: error executing command [sh -c exit 2], exit code 2",
    );
    const succeeding = await readExec(
      await openStream(execPath("etcd-x", ["true"], { stdout: "true" }), ["channel.k8s.io"]),
    );
    expect(succeeding.frames).toEqual([Buffer.from([1])]);
  });

  it("answers a missing container, a missing pod and an ambiguous container before upgrading", async () => {
    const refusal = (path: string) =>
      openStream(path, ["v5.channel.k8s.io"]).then(
        () => undefined,
        (error: UpgradeRefused) => ({ status: error.status, body: JSON.parse(error.body) }),
      );
    expect(await refusal(execPath("etcd-x", ["true"], { stdout: "true", container: "nope" }))).toEqual({
      status: 400,
      body: {
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Failure",
        message: "container nope is not valid for pod etcd-x",
        reason: "BadRequest",
        code: 400,
      },
    });
    expect(await refusal(execPath("etcd-gone", ["true"], { stdout: "true" }))).toMatchObject({
      status: 404,
      body: {
        message: 'pods "etcd-gone" not found',
        reason: "NotFound",
        details: { name: "etcd-gone", kind: "pods" },
      },
    });
    expect(await refusal(execPath("kube-apiserver-x", ["true"], { stdout: "true" }))).toMatchObject({
      status: 400,
      body: {
        message:
          "a container name must be specified for pod kube-apiserver-x, choose one of: [kube-apiserver sidecar]",
      },
    });
  });

  it("pauses the command's output while the client does not read, then delivers every byte", async () => {
    const total = 200_000_000;
    const rssBefore = process.memoryUsage().rss;
    const stream = await openStream(
      execPath("etcd-x", ["head", "-c", String(total), "/dev/zero"], { stdout: "true", stderr: "true" }),
      ["v5.channel.k8s.io"],
    );
    stream.socket.pause();
    const record = lastStream<ExecStreamRecord>("exec");
    // The process blocks in write() once the socket buffers and the small queue are full.
    const readWhilePaused = await waitUntilStalled(() => record.bytesFromSource);
    expect(readWhilePaused).toBeLessThan(32 * 1024 * 1024);
    expect(record.peakQueuedToClient).toBeLessThan(2 * 1024 * 1024);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1024 * 1024);

    let received = 0;
    let status = "";
    const count = (frame: Buffer) => {
      if (frame[0] === 1) received += frame.length - 1;
      if (frame[0] === 3) status = frame.subarray(1).toString("utf8");
    };
    for (const frame of stream.redirect(count)) count(frame);
    stream.socket.resume();
    await stream.closed;
    expect(received).toBe(total);
    expect(status).toBe('{"metadata":{},"status":"Success"}');
    expect(record.bytesFromSource).toBe(total);
  });
});

describe("the port-forward protocol, byte for byte", () => {
  const forwardPath = (port: number, pod = "relay", namespace = "default") =>
    `/api/v1/namespaces/${namespace}/pods/${pod}/portforward?ports=${port}`;

  it("v4.channel.k8s.io: [0, port LE] and [1, port LE] first, then data relayed both ways on channel 0", async () => {
    const stream = await openStream(forwardPath(7000), ["v4.channel.k8s.io"]);
    expect(await stream.next()).toEqual(Buffer.from([0, 0x58, 0x1b])); // 7000 = 0x1b58
    expect(await stream.next()).toEqual(Buffer.from([1, 0x58, 0x1b]));
    stream.socket.send(Buffer.concat([Buffer.from([0]), Buffer.from("hello, pod")]), { binary: true });
    let echoed = Buffer.alloc(0);
    while (echoed.length < 10) {
      const frame = await stream.next();
      expect(frame[0]).toBe(0);
      echoed = Buffer.concat([echoed, frame.subarray(1)]);
    }
    expect(echoed.toString()).toBe("hello, pod");
    stream.socket.close();
    await stream.closed;
  });

  it("uses the port the client asked for, not the local one it is mapped to", async () => {
    const stream = await openStream(forwardPath(podPort, "etcd-x", "kube-system"), ["v4.channel.k8s.io"]);
    expect(await stream.next()).toEqual(Buffer.from([0, etcdPodPort & 0xff, etcdPodPort >> 8]));
    expect(await stream.next()).toEqual(Buffer.from([1, 0x4b, 0x09]));
    stream.socket.close();
    await stream.closed;
  });

  it("v4.base64.channel.k8s.io: the same frames as a digit and base64 text", async () => {
    const stream = await openStream(forwardPath(7000), ["v4.base64.channel.k8s.io"]);
    expect((await stream.next()).toString("latin1")).toBe(`0${Buffer.from([0x58, 0x1b]).toString("base64")}`);
    expect((await stream.next()).toString("latin1")).toBe(`1${Buffer.from([0x58, 0x1b]).toString("base64")}`);
    stream.socket.send(`0${Buffer.from("ping").toString("base64")}`, { binary: false });
    expect((await stream.next()).toString("latin1")).toBe(`0${Buffer.from("ping").toString("base64")}`);
    stream.socket.close();
    await stream.closed;
  });

  it("reports a refused connection on the error channel, then closes", async () => {
    const stream = await openStream(forwardPath(7001), ["v4.channel.k8s.io"]);
    await stream.next();
    await stream.next();
    const error = await stream.next();
    expect(error[0]).toBe(1);
    expect(error.subarray(1).toString()).toMatch(
      /^error forwarding port 7001 to pod [0-9a-f]{64}, uid : .*connect: connection refused$/,
    );
    expect(await stream.closed).toBe(1000);
  });

  it("pauses the pod's connection while the client does not read, then delivers every byte", async () => {
    const stream = await openStream(forwardPath(7002), ["v4.channel.k8s.io"]);
    stream.socket.pause();
    const record = lastStream<PortForwardStreamRecord>("portforward");
    const readWhilePaused = await waitUntilStalled(() => record.bytesFromSource);
    expect(readWhilePaused).toBeLessThan(bulkBytes / 2);
    expect(record.peakQueuedToClient).toBeLessThan(2 * 1024 * 1024);

    let received = -2; // the port prefix of the first data frame
    const count = (frame: Buffer) => {
      if (frame[0] === 0) received += frame.length - 1;
    };
    for (const frame of stream.redirect(count)) count(frame);
    stream.socket.resume();
    await stream.closed;
    expect(received).toBe(bulkBytes);
  });

  it("stops reading the client while the pod does not read, then delivers every byte", async () => {
    const stream = await openStream(forwardPath(7003), ["v4.channel.k8s.io"]);
    await stream.next();
    await stream.next();
    const chunk = Buffer.concat([Buffer.from([0]), Buffer.alloc(64 * 1024, 3)]);
    const chunks = 512; // 32 MiB
    for (let index = 0; index < chunks; index++) stream.socket.send(chunk, { binary: true });
    const record = lastStream<PortForwardStreamRecord>("portforward");
    expect(await waitUntilStalled(() => record.bytesFromClient)).toBeLessThan((chunks * 64 * 1024) / 2);
    expect(record.peakQueuedToSource).toBeLessThan(2 * 1024 * 1024);

    const sink = sinkConnections.at(-1) as Socket;
    let sunk = 0;
    sink.on("data", (data: Buffer) => {
      sunk += data.length;
    });
    sink.resume();
    for (let waited = 0; sunk < chunks * 64 * 1024 && waited < 20_000; waited += 50) await sleep(50);
    expect(sunk).toBe(chunks * 64 * 1024);
    stream.socket.close();
    await stream.closed;
  });
});

describe("pod deletion", () => {
  it("kills the exec'd processes (exit code 137) and answers 404 afterwards", async () => {
    standIn.setPod(etcdPod("etcd-doomed", 1, { labels: { component: "doomed" } }));
    const stream = await openStream(
      execPath("etcd-doomed", ["sh", "-c", "sleep 30; echo never"], { stdout: "true", stderr: "true" }),
      ["v5.channel.k8s.io"],
    );
    expect(await stream.next()).toEqual(Buffer.from([1]));
    const started = Date.now();
    standIn.deletePod("etcd-doomed", { namespace: "kube-system" });
    const result = await readExec(stream);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(result.stdout).toBe("");
    expect(JSON.parse(result.status)).toMatchObject({
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "137" }] },
    });
    expect((await getJson("/api/v1/namespaces/kube-system/pods/etcd-doomed")).status).toBe(404);
  });

  it("can cut the streams abruptly, with no status and no close frame", async () => {
    standIn.setPod({ ...etcdPod("etcd-lost", 1), labels: { component: "lost" } });
    const stream = await openStream(execPath("etcd-lost", ["sleep", "30"], { stdout: "true" }), [
      "v5.channel.k8s.io",
    ]);
    await stream.next();
    standIn.deletePod("etcd-lost", { abrupt: true });
    const result = await readExec(stream);
    expect(result.status).toBe("");
    expect(result.closeCode).toBe(1006);
  });
});

describe("authentication and authorization", () => {
  const unauthorized = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message: "Unauthorized",
    reason: "Unauthorized",
    code: 401,
  };

  it("answers 401 without credentials and with a wrong token, and 200 with a valid one", async () => {
    const path = "/api/v1/namespaces/kube-system/pods?labelSelector=component%3Detcd";
    expect(await getJson(path, {})).toEqual({ status: 401, body: unauthorized });
    expect(await getJson(path, { token: "wrong" })).toEqual({ status: 401, body: unauthorized });
    const ok = await getJson(path);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ kind: "PodList", apiVersion: "v1" });
    expect(standIn.requests.at(-2)).toMatchObject({
      path: "/api/v1/namespaces/kube-system/pods",
      status: 401,
    });
    expect(standIn.requests.at(-2)?.user).toBeUndefined();
    expect(standIn.requests.at(-1)).toMatchObject({ user: "stand-in-user", verb: "list", status: 200 });
  });

  it("refuses a WebSocket upgrade without credentials with 401", async () => {
    const refused = await openStream(
      execPath("etcd-x", ["true"], { stdout: "true" }),
      ["v5.channel.k8s.io"],
      "",
    ).then(
      () => undefined,
      (error: UpgradeRefused) => ({ status: error.status, body: JSON.parse(error.body) }),
    );
    expect(refused).toEqual({ status: 401, body: unauthorized });
  });

  it("accepts a client certificate from its CA and refuses one from another CA", async () => {
    const cert = await readFile(standIn.clientCertificateFile as string);
    const key = await readFile(standIn.clientKeyFile as string);
    expect((await getJson("/api/v1/namespaces/kube-system/pods", { cert, key })).status).toBe(200);
    const other = await makeTempDir("other-ca");
    try {
      const foreign = await createTestCertificates(other.path);
      const response = await getJson("/api/v1/namespaces/kube-system/pods", {
        cert: await readFile(foreign.clientCertFile),
        key: await readFile(foreign.clientKeyFile),
      });
      expect(response).toEqual({ status: 401, body: unauthorized });
    } finally {
      await other.remove();
    }
  });

  it("answers 403 as the API server words it, and needs create as well as get for an exec upgrade", async () => {
    const secrets = await getJson("/api/v1/namespaces/kube-system/secrets", { token: readerToken });
    expect(secrets).toEqual({
      status: 403,
      body: {
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Failure",
        message:
          'secrets is forbidden: User "reader" cannot list resource "secrets" in API group "" in the namespace "kube-system"',
        reason: "Forbidden",
        details: { kind: "secrets" },
        code: 403,
      },
    });
    const refused = await openStream(
      execPath("etcd-x", ["true"], { stdout: "true" }),
      ["v5.channel.k8s.io"],
      readerToken,
    ).then(
      () => undefined,
      (error: UpgradeRefused) => ({ status: error.status, body: JSON.parse(error.body) }),
    );
    expect(refused).toMatchObject({
      status: 403,
      body: {
        message:
          'pods "etcd-x" is forbidden: User "reader" cannot create resource "pods/exec" in API group "" in the namespace "kube-system"',
        details: { name: "etcd-x", kind: "pods" },
      },
    });
    expect(standIn.requests.at(-1)).toMatchObject({
      user: "reader",
      authorizedVerbs: ["get", "create"],
      status: 403,
    });
    const pods = await getJson("/api/v1/namespaces/kube-system/pods", { token: readerToken });
    expect(pods.status).toBe(200);
  });

  it("serves discovery with pods, pods/exec, pods/portforward and secrets and their verbs", async () => {
    const { body } = await getJson("/api/v1");
    const resources = body.resources as Array<{ name: string; verbs: string[] }>;
    expect(resources.map((resource) => resource.name)).toEqual(
      expect.arrayContaining(["pods", "pods/exec", "pods/portforward", "secrets"]),
    );
    expect(resources.find((resource) => resource.name === "pods/exec")?.verbs).toEqual(["create", "get"]);
    expect((await getJson("/version")).body).toMatchObject({ major: "1", gitVersion: "v1.32.4" });
    expect((await getJson("/api")).body).toMatchObject({ kind: "APIVersions", versions: ["v1"] });
    const secret = await getJson("/api/v1/namespaces/kube-system/secrets/etcd-client");
    expect(secret.body).toMatchObject({
      kind: "Secret",
      data: { "ca.crt": Buffer.from("pem").toString("base64") },
    });
  });
});

// Writes: pods and secrets created (POST) and deleted (DELETE) through @kubernetes/client-node, each
// authorized for its verb, kept so that a test can read back what the client sent.
describe("the stand-in creating and deleting pods and secrets", () => {
  let writable: KubeApiStandIn;
  const decisions: Array<{ verb: string; resource?: string; name?: string }> = [];
  let allowDelete = true;

  beforeAll(async () => {
    writable = await startKubeApiStandIn({
      authorize: (attributes) => {
        decisions.push({ verb: attributes.verb, resource: attributes.resource, name: attributes.name });
        return attributes.verb !== "delete" || allowDelete;
      },
    });
  });

  afterAll(async () => {
    await writable?.stop();
  });

  const api = () => {
    const config = new KubeConfig();
    config.loadFromFile(writable.kubeconfigPath);
    return config.makeApiClient(CoreV1Api);
  };

  it("creates a secret from data and stringData, and serves it back", async () => {
    const created = await api().createNamespacedSecret({
      namespace: "agents",
      body: {
        metadata: { name: "urls", labels: { app: "agent" } },
        data: { binary: Buffer.from("bytes").toString("base64") },
        stringData: { url: "https://example/?X-Amz-Signature=s" },
      },
    });
    expect(created.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    const read = await api().readNamespacedSecret({ name: "urls", namespace: "agents" });
    expect(Buffer.from(read.data?.url ?? "", "base64").toString()).toBe("https://example/?X-Amz-Signature=s");
    expect(Buffer.from(read.data?.binary ?? "", "base64").toString()).toBe("bytes");
    expect(writable.created.at(-1)).toMatchObject({ resource: "secrets", namespace: "agents", name: "urls" });
    expect(decisions.at(-2)).toEqual({ verb: "create", resource: "secrets", name: undefined });
  });

  it("creates a pod, Pending on its node, whose spec is served as posted", async () => {
    await api().createNamespacedPod({
      namespace: "agents",
      body: {
        metadata: { name: "agent-0", labels: { app: "agent" } },
        spec: {
          nodeName: "cp-0",
          hostNetwork: true,
          hostPID: true,
          restartPolicy: "Never",
          tolerations: [{ operator: "Exists" }],
          containers: [{ name: "agent", image: "agent:1", command: ["bash", "-c", "true"] }],
          volumes: [{ name: "data", hostPath: { path: "/var/lib", type: "Directory" } }],
        },
      },
    });
    const pod = await api().readNamespacedPod({ name: "agent-0", namespace: "agents" });
    expect(pod.status?.phase).toBe("Pending");
    expect(pod.spec).toMatchObject({
      nodeName: "cp-0",
      hostPID: true,
      restartPolicy: "Never",
      tolerations: [{ operator: "Exists" }],
      volumes: [{ name: "data", hostPath: { path: "/var/lib", type: "Directory" } }],
    });
    const listed = await api().listNamespacedPod({ namespace: "agents", labelSelector: "app=agent" });
    expect(listed.items.map((item) => item.metadata?.name)).toEqual(["agent-0"]);
    expect(writable.created.at(-1)?.object).toMatchObject({ spec: { nodeName: "cp-0" } });
  });

  it("answers 409 AlreadyExists for a name taken, 422 for a pod without a name or containers", async () => {
    const again = api().createNamespacedPod({
      namespace: "agents",
      body: { metadata: { name: "agent-0" }, spec: { containers: [{ name: "agent" }] } },
    });
    await expect(again).rejects.toMatchObject({ code: 409 });
    await expect(again).rejects.toMatchObject({
      body: expect.stringContaining('"reason":"AlreadyExists"'),
    });
    await expect(
      api().createNamespacedPod({
        namespace: "agents",
        body: { metadata: {}, spec: { containers: [{ name: "a" }] } },
      }),
    ).rejects.toMatchObject({ code: 422 });
    await expect(
      api().createNamespacedPod({
        namespace: "agents",
        body: { metadata: { name: "empty" }, spec: { containers: [] } },
      }),
    ).rejects.toMatchObject({ code: 422 });
  });

  it("refuses a delete the authorizer denies with 403, and keeps the object", async () => {
    allowDelete = false;
    try {
      await expect(api().deleteNamespacedPod({ name: "agent-0", namespace: "agents" })).rejects.toMatchObject(
        {
          code: 403,
        },
      );
    } finally {
      allowDelete = true;
    }
    await expect(api().readNamespacedPod({ name: "agent-0", namespace: "agents" })).resolves.toBeDefined();
  });

  it("deletes pods and secrets by name, then answers 404 for them", async () => {
    const deleted = await api().deleteNamespacedPod({ name: "agent-0", namespace: "agents" });
    expect(deleted.metadata?.name).toBe("agent-0");
    await api().deleteNamespacedSecret({ name: "urls", namespace: "agents" });
    await expect(api().readNamespacedPod({ name: "agent-0", namespace: "agents" })).rejects.toMatchObject({
      code: 404,
    });
    await expect(api().deleteNamespacedSecret({ name: "urls", namespace: "agents" })).rejects.toMatchObject({
      code: 404,
    });
    expect(
      decisions.filter((decision) => decision.verb === "delete").map((decision) => decision.resource),
    ).toEqual(["pods", "pods", "secrets", "secrets"]);
  });
});

describe("the stand-in as the kubelet of created pods (runCreatedPods)", () => {
  let kubelet: KubeApiStandIn;
  let host: { path: string; remove: () => Promise<void> };

  beforeAll(async () => {
    host = await makeTempDir("kubelet-host");
    kubelet = await startKubeApiStandIn({ runCreatedPods: { env: { KNOB: "from-test" } } });
  });

  afterAll(async () => {
    await kubelet?.stop();
    await host?.remove();
  });

  const api = () => {
    const config = new KubeConfig();
    config.loadFromFile(kubelet.kubeconfigPath);
    return config.makeApiClient(CoreV1Api);
  };

  /** The pod's phase and its container's state, once the phase is one of `phases`. */
  async function settled(name: string, phases: string[]) {
    for (let attempt = 0; attempt < 200; attempt++) {
      const pod = await api().readNamespacedPod({ name, namespace: "agents" });
      if (phases.includes(pod.status?.phase ?? "")) return pod;
      await sleep(25);
    }
    throw new Error(`pod ${name} never reached ${phases.join(" or ")}`);
  }

  /** A pod of one bash container on node cp-0 that mounts the Secret `files` and a host directory. */
  function agentPod(name: string, script: string, hostPath = host.path) {
    return {
      metadata: { name },
      spec: {
        nodeName: "cp-0",
        restartPolicy: "Never",
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: "agent",
            command: ["bash", "-c", script],
            env: [
              { name: "PLAIN", value: "plain" },
              { name: "URL", valueFrom: { secretKeyRef: { name: "files", key: "url" } } },
            ],
            volumeMounts: [
              { name: "host", mountPath: hostPath },
              { name: "script", mountPath: "/opt/agent", readOnly: true },
              { name: "tmp", mountPath: "/tmp" },
            ],
          },
        ],
        volumes: [
          { name: "host", hostPath: { path: hostPath, type: "Directory" } },
          {
            name: "script",
            secret: { secretName: "files", items: [{ key: "run.sh", path: "run.sh" }], defaultMode: 0o500 },
          },
          { name: "tmp", emptyDir: {} },
        ],
      },
    };
  }

  it("runs a created pod's container with its Secret's env and files, its host mount and an emptyDir /tmp", async () => {
    await api().createNamespacedSecret({
      namespace: "agents",
      body: {
        metadata: { name: "files" },
        stringData: { url: "https://bucket/plan?X-Amz-Signature=s", "run.sh": 'echo "ran with $1"' },
      },
    });
    const out = `${host.path}/out`;
    await api().createNamespacedPod({
      namespace: "agents",
      body: agentPod(
        "writer",
        `{ bash /opt/agent/run.sh "$URL"; echo "$PLAIN $KNOB"; stat -c %a /opt/agent/run.sh; mktemp; } > ${out}`,
      ),
    });
    const pod = await settled("writer", ["Succeeded", "Failed"]);
    expect(pod.status?.phase).toBe("Succeeded");
    expect(pod.status?.containerStatuses?.[0]?.state?.terminated).toMatchObject({
      exitCode: 0,
      reason: "Completed",
    });
    const [ran, env, mode, temporary] = (await readFile(out, "utf8")).trim().split("\n");
    expect(ran).toBe("ran with https://bucket/plan?X-Amz-Signature=s");
    expect(env).toBe("plain from-test");
    expect(mode).toBe("500");
    // The emptyDir at /tmp is the pod's own directory, not the machine's /tmp itself.
    expect(temporary).toMatch(/\/pods\/agents\/writer\/\d+\/volumes\/tmp\/tmp\.\w+$/);
  });

  it("reports a failing container's exit code, and keeps a pod whose host directory is missing Pending", async () => {
    await api().createNamespacedPod({ namespace: "agents", body: agentPod("failing", "exit 3") });
    const failed = await settled("failing", ["Failed", "Succeeded"]);
    expect(failed.status?.containerStatuses?.[0]?.state?.terminated).toMatchObject({
      exitCode: 3,
      reason: "Error",
    });
    await api().createNamespacedPod({
      namespace: "agents",
      body: agentPod("no-host-dir", `touch ${host.path}/never`, `${host.path}/missing`),
    });
    await sleep(200);
    const pending = await api().readNamespacedPod({ name: "no-host-dir", namespace: "agents" });
    expect(pending.status?.phase).toBe("Pending");
    expect(pending.status?.containerStatuses?.[0]?.state?.waiting?.reason).toBe("ContainerCreating");
    // The reason is in the pod's events, as `kubectl describe pod` shows it, not in its status.
    const events = await api().listNamespacedEvent({
      namespace: "agents",
      fieldSelector: `involvedObject.kind=Pod,involvedObject.name=no-host-dir,involvedObject.uid=${pending.metadata?.uid}`,
    });
    expect(events.items).toHaveLength(1);
    expect(events.items[0]).toMatchObject({
      type: "Warning",
      reason: "FailedMount",
      message: `MountVolume.SetUp failed for volume "host" : hostPath type check failed: ${host.path}/missing is not a directory`,
      source: { component: "kubelet", host: "cp-0" },
      count: 1,
    });
  });

  it("keeps a pod whose env names a missing Secret key waiting with CreateContainerConfigError", async () => {
    const body = agentPod("no-key", "true");
    const env = body.spec.containers[0]?.env?.[1]?.valueFrom?.secretKeyRef;
    if (env) env.key = "absent";
    await api().createNamespacedPod({ namespace: "agents", body });
    await sleep(200);
    const pending = await api().readNamespacedPod({ name: "no-key", namespace: "agents" });
    expect(pending.status?.phase).toBe("Pending");
    expect(pending.status?.containerStatuses?.[0]?.state?.waiting).toEqual({
      reason: "CreateContainerConfigError",
      message: "couldn't find key absent in Secret agents/files",
    });
  });

  it("stops a running container with SIGTERM when its pod is deleted", async () => {
    const marker = `${host.path}/terminated`;
    await api().createNamespacedPod({
      namespace: "agents",
      body: agentPod("long", `trap 'echo term > ${marker}; exit 0' TERM; while true; do sleep 0.05; done`),
    });
    await settled("long", ["Running"]);
    await sleep(200);
    await api().deleteNamespacedPod({ name: "long", namespace: "agents" });
    await kubelet.podRuns.get("agents/long")?.exited;
    expect((await readFile(marker, "utf8")).trim()).toBe("term");
  });
});
