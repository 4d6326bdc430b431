// A local TCP listener whose every connection is relayed to one port of a pod through a Kubernetes
// port-forward WebSocket (`v4.channel.k8s.io`, FACTS.md §5): data on channel 0, errors on channel 1, each
// channel's byte stream opened by the port as a little-endian uint16, which is checked and stripped.
// Written on `ws` directly because @kubernetes/client-node's PortForward ignores backpressure (a slow
// reader makes it buffer the whole stream), forwards one connection only, and passes error-channel text
// to a stream instead of failing the connection. Here both directions pause the other side when full.
import { createServer, type Server, type Socket } from "node:net";
import type { KubeConfig } from "@kubernetes/client-node";
import { WebSocket } from "ws";
import { type EtcdBackupError, EtcdUnavailableError, InvalidInputError } from "../errors.js";
import { describeConnectError } from "./kube-api-failure.js";
import { encodeChannelFrame, type KubeWebSocket, openKubeWebSocket } from "./kube-websocket.js";

export interface PortForwardTunnelOptions {
  kubeConfig: KubeConfig;
  pod: { namespace: string; name: string };
  /** The port inside the pod. */
  port: number;
  /** Bytes queued in each direction before the sending side is paused. Default 1 MiB. */
  highWaterMark?: number;
  /** Called for each failed connection, with the error that also lands in `errors`. */
  onError?: (error: EtcdBackupError) => void;
}

export interface PortForwardTunnel {
  readonly host: "127.0.0.1";
  readonly localPort: number;
  /** Failures of the relayed connections, oldest first (at most the last 20). */
  readonly errors: readonly EtcdBackupError[];
  /** Connections accepted so far. */
  readonly connectionCount: number;
  /** Stops listening and cuts every relayed connection. */
  close(): Promise<void>;
}

const dataChannel = 0;
const errorChannel = 1;
const portPrefixBytes = 2;
const maxErrors = 20;

export async function openPortForwardTunnel(options: PortForwardTunnelOptions): Promise<PortForwardTunnel> {
  const { pod, port } = options;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidInputError(`port-forward port ${port} is not a TCP port`);
  }
  const where = `port-forward to pod ${pod.namespace}/${pod.name} port ${port}`;
  const relays = new Set<PortForwardRelay>();
  const errors: EtcdBackupError[] = [];
  let connectionCount = 0;
  const report = (error: EtcdBackupError) => {
    errors.push(error);
    if (errors.length > maxErrors) errors.shift();
    options.onError?.(error);
  };
  const server: Server = createServer({ pauseOnConnect: true }, (socket) => {
    connectionCount++;
    const relay = new PortForwardRelay(socket, options, where, report);
    relays.add(relay);
    socket.once("close", () => relays.delete(relay));
    void relay.start();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === "string")
    throw new Error("the tunnel listener has no TCP address");
  return {
    host: "127.0.0.1",
    localPort: address.port,
    errors,
    get connectionCount() {
      return connectionCount;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const relay of relays) relay.cut();
      await closed;
    },
  };
}

/** One local connection and its WebSocket. */
class PortForwardRelay {
  private socket: KubeWebSocket | undefined;
  private readonly highWaterMark: number;
  /** Bytes sent on the WebSocket and not yet written to its TCP socket. */
  private queuedUpstream = 0;
  /** Port-prefix bytes still expected on channels 0 and 1, and those seen so far. */
  private readonly prefixes = [Buffer.alloc(0), Buffer.alloc(0)];
  private failed = false;
  private cutting = false;
  private waitingForDrain = false;
  private socketError: Error | undefined;

  constructor(
    private readonly local: Socket,
    private readonly options: PortForwardTunnelOptions,
    private readonly where: string,
    private readonly report: (error: EtcdBackupError) => void,
  ) {
    this.highWaterMark = options.highWaterMark ?? 1024 * 1024;
  }

  async start(): Promise<void> {
    const { local, options } = this;
    local.on("error", () => {
      // "close" follows and ends the WebSocket.
    });
    local.once("close", () => this.onLocalClosed());
    try {
      await openKubeWebSocket(
        options.kubeConfig,
        {
          path: `/api/v1/namespaces/${encodeURIComponent(options.pod.namespace)}/pods/${encodeURIComponent(options.pod.name)}/portforward?ports=${options.port}`,
          // The kubelet also accepts "" and v4.base64; only the binary framing is spoken here.
          protocols: ["v4.channel.k8s.io"],
          where: this.where,
        },
        {
          open: (socket) => this.onOpen(socket),
          message: (data, isBinary) => this.fromPod(data, isBinary),
          close: (code) => this.onSocketClosed(code),
          error: (error) => {
            this.socketError = error;
          },
        },
      );
    } catch (error) {
      this.fail(describeConnectError(error));
    }
  }

  private onOpen(socket: KubeWebSocket): void {
    const { local } = this;
    if (local.destroyed || this.cutting) {
      socket.terminate();
      return;
    }
    this.socket = socket;
    local.on("data", (chunk: Buffer) => this.fromLocal(chunk));
    // v4 has no half-close: the local side's end ends the whole forward, once queued frames are out.
    local.once("end", () => socket.close(1000));
    local.resume();
  }

  /** Cuts both sides at once (the tunnel is closing). */
  cut(): void {
    this.cutting = true;
    this.socket?.terminate();
    this.local.destroy();
  }

  private fromLocal(chunk: Buffer): void {
    const socket = this.socket;
    if (socket?.readyState !== WebSocket.OPEN) return;
    const frame = encodeChannelFrame(dataChannel, chunk);
    this.queuedUpstream += frame.length;
    socket.send(frame, { binary: true }, () => {
      this.queuedUpstream -= frame.length;
      if (this.queuedUpstream <= this.highWaterMark / 2 && this.local.isPaused()) this.local.resume();
    });
    if (this.queuedUpstream >= this.highWaterMark) this.local.pause();
  }

  private fromPod(data: Buffer, isBinary: boolean): void {
    if (this.failed) return;
    if (!isBinary) {
      this.fail(
        new EtcdUnavailableError(
          `${this.where}: the server sent a text frame, which v4.channel.k8s.io does not use`,
        ),
      );
      return;
    }
    if (data.length === 0) return;
    const channel = data[0] as number;
    if (channel !== dataChannel && channel !== errorChannel) {
      this.fail(
        new EtcdUnavailableError(
          `${this.where}: the server sent a frame on channel ${channel}; one port uses channels 0 and 1`,
        ),
      );
      return;
    }
    const payload = this.stripPortPrefix(channel, data.subarray(1));
    if (payload === undefined || payload.length === 0) return;
    if (channel === errorChannel) {
      // The kubelet writes a failure of the pod-side connection here ("error forwarding port …").
      this.fail(
        new EtcdUnavailableError(`${this.where} failed: ${payload.toString("utf8").trim().slice(0, 2000)}`),
      );
      return;
    }
    if (!this.local.write(payload) && !this.waitingForDrain) {
      // The local reader is full: stop reading the WebSocket, so that TCP flow control holds the pod back.
      const socket = this.socket;
      this.waitingForDrain = true;
      socket?.pause();
      this.local.once("drain", () => {
        this.waitingForDrain = false;
        socket?.resume();
      });
    }
  }

  /**
   * The first two bytes of each channel's stream are the port, little-endian; they may arrive split over
   * frames or joined to data. Returns what follows them, or undefined once the connection has failed.
   */
  private stripPortPrefix(channel: number, payload: Buffer): Buffer | undefined {
    const seen = this.prefixes[channel] as Buffer;
    if (seen.length >= portPrefixBytes) return payload;
    const needed = portPrefixBytes - seen.length;
    const prefix = Buffer.concat([seen, payload.subarray(0, needed)]);
    this.prefixes[channel] = prefix;
    if (prefix.length < portPrefixBytes) return Buffer.alloc(0);
    const announced = prefix.readUInt16LE(0);
    if (announced !== this.options.port) {
      this.fail(
        new EtcdUnavailableError(
          `${this.where}: channel ${channel} opened with port ${announced}, not ${this.options.port}`,
        ),
      );
      return undefined;
    }
    return payload.subarray(needed);
  }

  private onSocketClosed(code: number): void {
    if (this.failed || this.cutting) return;
    const dataStarted = (this.prefixes[dataChannel] as Buffer).length >= portPrefixBytes;
    if ((code === 1000 || code === 1005) && dataStarted) {
      // A normal close: the pod's side ended. Flush what was relayed, then end the local connection.
      this.local.end();
      return;
    }
    this.fail(
      new EtcdUnavailableError(
        `${this.where}: the connection closed (WebSocket code ${code}${this.socketError ? `, ${this.socketError.message}` : ""})${dataStarted ? "" : " before the port was announced"}`,
      ),
    );
  }

  private onLocalClosed(): void {
    const socket = this.socket;
    if (socket && socket.readyState <= 1) {
      // After an error the forward is abandoned; after a clean end, queued frames go first.
      if (this.local.errored || this.failed) socket.terminate();
      else socket.close(1000);
    }
  }

  private fail(error: EtcdBackupError): void {
    if (this.failed) return;
    this.failed = true;
    if (!this.cutting) this.report(error);
    this.socket?.terminate();
    // A reset, not an orderly end: the client must not take a truncated stream for a complete one.
    this.local.resetAndDestroy();
  }
}
