// The port-forward tunnel against a raw WebSocket server that plays the kubelet frame by frame
// (FACTS.md §5): the request, the port prefixes (whole, split over frames, joined to data, wrong), the
// error channel, refusals, dropped connections, and flow control in both directions.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ErrorNames, type EtcdBackupError } from "../../lambdas/core/errors.js";
import {
  openPortForwardTunnel,
  type PortForwardTunnel,
} from "../../lambdas/core/kube/port-forward-tunnel.js";
import { type WebSocketConnection, WebSocketServer } from "../support/kube-api-server/ws.js";

const podPort = 2379; // little-endian bytes [0x4b, 0x09]
const token = "framing-test-token";

type Scenario = (socket: WebSocketConnection, request: IncomingMessage) => void;

let server: Server;
let serverPort = 0;
let scenario: Scenario = () => {};
/** What the next upgrade is answered with instead of 101, if anything. */
let refusal: { status: number; body: string } | undefined;
const upgrades: Array<{ url: string; protocol: string | undefined; authorization: string | undefined }> = [];
const tunnels: PortForwardTunnel[] = [];
const clients: Socket[] = [];

const upgrader = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  closeTimeout: 1000,
  handleProtocols: (offered) => (offered.has("v4.channel.k8s.io") ? "v4.channel.k8s.io" : false),
});

beforeAll(async () => {
  server = createServer((_request, response) => response.writeHead(404).end());
  server.on("upgrade", (request: IncomingMessage, socket, head) => {
    upgrades.push({
      url: request.url ?? "",
      protocol: request.headers["sec-websocket-protocol"],
      authorization: request.headers.authorization,
    });
    if (refusal) {
      const body = refusal.body;
      socket.end(
        `HTTP/1.1 ${refusal.status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      return;
    }
    upgrader.handleUpgrade(request, socket, head, (connection) => scenario(connection, request));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  serverPort = (server.address() as { port: number }).port;
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await Promise.all(tunnels.splice(0).map((tunnel) => tunnel.close()));
  refusal = undefined;
  upgrades.length = 0;
});

afterAll(async () => {
  upgrader.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function kubeConfig(): KubeConfig {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: "raw", server: `http://127.0.0.1:${serverPort}`, skipTLSVerify: true }],
    users: [{ name: "backup", token }],
    contexts: [{ name: "raw", cluster: "raw", user: "backup" }],
    currentContext: "raw",
  });
  return config;
}

async function openTunnel(errors: EtcdBackupError[] = []): Promise<PortForwardTunnel> {
  const tunnel = await openPortForwardTunnel({
    kubeConfig: kubeConfig(),
    pod: { namespace: "kube-system", name: "etcd-0" },
    port: podPort,
    onError: (error) => errors.push(error),
  });
  tunnels.push(tunnel);
  return tunnel;
}

function connectTo(tunnel: PortForwardTunnel): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(tunnel.localPort, tunnel.host, () => resolve(socket));
    socket.once("error", reject);
    clients.push(socket);
  });
}

/** Everything the socket receives until it closes, and how it closed. */
function collect(socket: Socket): Promise<{ data: Buffer; error: NodeJS.ErrnoException | undefined }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: NodeJS.ErrnoException | undefined;
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", (failure) => {
      error = failure;
    });
    socket.on("close", () => resolve({ data: Buffer.concat(chunks), error }));
  });
}

const frame = (channel: number, ...parts: Array<number[] | string | Buffer>) =>
  Buffer.concat([
    Buffer.from([channel]),
    ...parts.map((part) => (typeof part === "string" ? Buffer.from(part) : Buffer.from(part))),
  ]);
const portBytes = [0x4b, 0x09];

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Waits until `value()` has not grown for `quietMs`: the stream has stalled. */
async function waitForStall(value: () => number, quietMs = 300): Promise<number> {
  let last = -1;
  while (value() !== last) {
    last = value();
    await sleep(quietMs);
  }
  return last;
}

describe("port-forward framing", () => {
  it("asks for the pod's port over v4.channel.k8s.io with the kubeconfig's token", async () => {
    scenario = (socket) => {
      socket.send(frame(0, portBytes), { binary: true });
      socket.send(frame(1, portBytes), { binary: true });
      socket.close(1000);
    };
    const tunnel = await openTunnel();
    const client = await connectTo(tunnel);
    await collect(client);
    expect(upgrades).toEqual([
      {
        url: "/api/v1/namespaces/kube-system/pods/etcd-0/portforward?ports=2379",
        protocol: "v4.channel.k8s.io",
        authorization: `Bearer ${token}`,
      },
    ]);
    expect(tunnel.host).toBe("127.0.0.1");
    expect(tunnel.connectionCount).toBe(1);
  });

  it("strips the port prefixes, whole, split over frames or joined to data, and relays the rest byte for byte", async () => {
    const fromClient: Buffer[] = [];
    scenario = (socket) => {
      socket.send(frame(0, [0x4b]), { binary: true }); // first half of the data channel's prefix
      socket.send(frame(0, [0x09], "hello "), { binary: true }); // second half, joined to data
      socket.send(frame(1, portBytes), { binary: true }); // the error channel's prefix, whole
      socket.send(frame(0), { binary: true }); // an empty frame carries nothing
      socket.send(frame(0, [0x4b, 0x09, 0x00, 0xff]), { binary: true }); // after the prefix, these are data
      socket.on("message", (data: Buffer) => {
        fromClient.push(Buffer.from(data));
        if (Buffer.concat(fromClient).length === 1 + "ping".length) {
          // Echo the payload back, then end as the kubelet does when the pod closes the connection.
          socket.send(frame(0, data.subarray(1)), { binary: true }, () => socket.close(1000));
        }
      });
    };
    const errors: EtcdBackupError[] = [];
    const tunnel = await openTunnel(errors);
    const client = await connectTo(tunnel);
    const received = collect(client);
    client.write("ping");
    const { data, error } = await received;
    expect(data).toEqual(
      Buffer.concat([Buffer.from("hello "), Buffer.from([0x4b, 0x09, 0x00, 0xff]), Buffer.from("ping")]),
    );
    expect(error).toBeUndefined();
    // The client's data goes on channel 0 with no prefix of its own.
    expect(Buffer.concat(fromClient)).toEqual(frame(0, "ping"));
    expect(errors).toEqual([]);
  });

  it("fails the connection when a channel opens with another port", async () => {
    scenario = (socket) => {
      socket.send(frame(0, [0x50, 0x00], "data for port 80"), { binary: true });
    };
    const errors: EtcdBackupError[] = [];
    const tunnel = await openTunnel(errors);
    const client = await connectTo(tunnel);
    const { data, error } = await collect(client);
    expect(data.length).toBe(0);
    expect(error?.code).toBe("ECONNRESET");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      name: ErrorNames.EtcdUnavailable,
      message: expect.stringContaining("channel 0 opened with port 80, not 2379"),
    });
    expect(tunnel.errors).toEqual(errors);
  });

  it("surfaces the error channel's text as an error and resets the local connection", async () => {
    const text =
      'error forwarding port 2379 to pod 0123abcd, uid : failed to connect to localhost:2379 inside namespace "0123abcd", IPv4: dial tcp4 127.0.0.1:2379: connect: connection refused';
    scenario = (socket) => {
      socket.send(frame(0, portBytes), { binary: true });
      socket.send(frame(1, portBytes), { binary: true });
      socket.send(frame(1, text), { binary: true });
    };
    const errors: EtcdBackupError[] = [];
    const tunnel = await openTunnel(errors);
    const client = await connectTo(tunnel);
    const { error } = await collect(client);
    // (With data just before it, a client's libuv may see the reset as an end: the tunnel reports it anyway.)
    expect(error?.code).toBe("ECONNRESET");
    expect(errors).toHaveLength(1);
    expect(errors[0]?.name).toBe(ErrorNames.EtcdUnavailable);
    expect(errors[0]?.message).toBe(`port-forward to pod kube-system/etcd-0 port 2379 failed: ${text}`);
  });

  it("fails on frames a one-port forward never carries", async () => {
    scenario = (socket) => {
      socket.send(frame(0, portBytes), { binary: true });
      socket.send(frame(2, [0x4c, 0x09]), { binary: true });
    };
    const errors: EtcdBackupError[] = [];
    const tunnel = await openTunnel(errors);
    await collect(await connectTo(tunnel));
    expect(errors[0]?.message).toContain("frame on channel 2");
  });

  it("reports a dropped WebSocket as an error, not as the end of the stream", async () => {
    scenario = (socket) => {
      socket.send(frame(0, portBytes), { binary: true });
      socket.send(frame(0, "half of a response"), { binary: true }, () => socket.terminate());
    };
    const errors: EtcdBackupError[] = [];
    const tunnel = await openTunnel(errors);
    const { data } = await collect(await connectTo(tunnel));
    expect(data.toString()).toBe("half of a response");
    expect(errors[0]?.message).toContain("the connection closed (WebSocket code 1006)");
  });

  it("turns a refused upgrade into an error with the Status message; RBAC refusals are not transient", async () => {
    const message =
      'pods "etcd-0" is forbidden: User "backup" cannot create resource "pods/portforward" in API group "" in the namespace "kube-system"';
    refusal = {
      status: 403,
      body: JSON.stringify({
        kind: "Status",
        apiVersion: "v1",
        status: "Failure",
        message,
        reason: "Forbidden",
        code: 403,
      }),
    };
    const errors: EtcdBackupError[] = [];
    const tunnel = await openTunnel(errors);
    const { error } = await collect(await connectTo(tunnel));
    expect(error?.code).toBe("ECONNRESET");
    expect(errors[0]).toMatchObject({ name: ErrorNames.KubernetesAccessDenied, transient: false });
    expect(errors[0]?.message).toContain(`answered 403: ${message}`);

    refusal = {
      status: 404,
      body: JSON.stringify({ kind: "Status", message: 'pods "etcd-0" not found', code: 404 }),
    };
    await collect(await connectTo(tunnel));
    expect(errors[1]).toMatchObject({ name: ErrorNames.EtcdUnavailable, transient: true });
    expect(errors[1]?.message).toContain('answered 404: pods "etcd-0" not found');
  });
});

describe("port-forward flow control", () => {
  const totalBytes = 128 * 1024 * 1024;
  const frameBytes = 64 * 1024;

  it("stops reading the WebSocket while the local reader is full", async () => {
    let flushedByServer = 0;
    scenario = (socket) => {
      socket.send(frame(0, portBytes), { binary: true });
      socket.send(frame(1, portBytes), { binary: true });
      const payload = Buffer.alloc(frameBytes, 7);
      let sent = 0;
      // Sends as fast as the socket takes frames: it is the tunnel that must hold it back.
      const pump = () => {
        while (sent < totalBytes && socket.bufferedAmount < 4 * frameBytes) {
          sent += frameBytes;
          socket.send(frame(0, payload), { binary: true }, () => {
            flushedByServer += frameBytes;
            if (flushedByServer === totalBytes) socket.close(1000);
          });
        }
        if (sent < totalBytes) setTimeout(pump, 1);
      };
      pump();
    };
    const tunnel = await openTunnel();
    const client = await connectTo(tunnel);
    client.pause();
    const stalledAt = await waitForStall(() => flushedByServer);
    // Only socket buffers (kernel, both hops) and the tunnel's queue hold the difference, not 128 MiB.
    expect(stalledAt).toBeLessThan(32 * 1024 * 1024);
    let received = 0;
    client.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    const closed = new Promise((resolve) => client.once("close", resolve));
    client.resume();
    await closed;
    expect(received).toBe(totalBytes);
    console.info(
      `local reader paused: the server could flush ${(stalledAt / 1048576).toFixed(1)} MiB of 128 MiB`,
    );
  });

  it("stops reading the local connection while the WebSocket to the pod is full", async () => {
    let serverSocket: WebSocketConnection | undefined;
    const serverHash = createHash("sha256");
    let receivedByServer = 0;
    scenario = (socket) => {
      serverSocket = socket;
      socket.send(frame(0, portBytes), { binary: true });
      socket.send(frame(1, portBytes), { binary: true });
      socket.pause(); // a pod that does not read
      socket.on("message", (data: Buffer) => {
        serverHash.update(data.subarray(1));
        receivedByServer += data.length - 1;
      });
    };
    const tunnel = await openTunnel();
    const client = await connectTo(tunnel);
    const clientHash = createHash("sha256");
    let written = 0;
    let done = false;
    const chunk = Buffer.alloc(frameBytes);
    const write = async () => {
      for (let index = 0; written < totalBytes; index++) {
        chunk.fill(index % 251);
        clientHash.update(chunk);
        written += chunk.length;
        if (!client.write(Buffer.from(chunk))) await new Promise((resolve) => client.once("drain", resolve));
      }
      done = true;
    };
    void write();
    await waitFor(() => serverSocket !== undefined, "the WebSocket");
    const stalledAt = await waitForStall(() => written);
    expect(done).toBe(false);
    expect(stalledAt).toBeLessThan(32 * 1024 * 1024);
    serverSocket?.resume();
    await waitFor(() => receivedByServer === totalBytes, "every byte at the server", 30_000);
    expect(serverHash.digest("hex")).toBe(clientHash.digest("hex"));
    console.info(
      `pod not reading: the local writer could write ${(stalledAt / 1048576).toFixed(1)} MiB of 128 MiB`,
    );
  });
});
