// One port-forward session over a WebSocket, as the kubelet serves it (kubelet/.../portforward/
// websocket.go, FACTS.md §5): per requested port a data channel 2i and an error channel 2i+1, each
// opened with the port as a little-endian uint16; one TCP connection per port, opened at once; the
// session ends when every connection has ended. Flow control holds in both directions.
import { connect, type Socket } from "node:net";
import { ChannelConnection, decodeFrame, type StreamStatistics } from "./channel-connection.js";
import type { StreamEnd } from "./exec-session.js";
import { messageBytes, type WebSocketConnection } from "./ws.js";

export const portForwardProtocols = ["", "v4.channel.k8s.io", "v4.base64.channel.k8s.io"] as const;
export type PortForwardProtocol = (typeof portForwardProtocols)[number];

export interface PortForwardTarget {
  host: string;
  port: number;
}

export interface PortForwardStreamRecord extends StreamStatistics {
  kind: "portforward";
  namespace: string;
  pod: string;
  ports: number[];
  protocol: PortForwardProtocol;
  state: StreamEnd;
  /** Messages written on the error channels. */
  errors: string[];
}

export class PortForwardSession {
  readonly record: PortForwardStreamRecord;
  /** Resolves when the WebSocket has closed. */
  readonly ended: Promise<void>;
  private readonly connection: ChannelConnection;
  private readonly targets: Array<Socket | undefined> = [];
  private readonly blockedTargets = new Set<Socket>();
  private readonly failedPorts = new Set<number>();
  private openPorts = 0;
  private closing = false;
  private resolveEnded: () => void = () => {};

  constructor(
    private readonly socket: WebSocketConnection,
    readonly protocol: PortForwardProtocol,
    private readonly scope: { namespace: string; pod: string; sandboxId: string },
    private readonly ports: number[],
    highWaterMark: number,
  ) {
    this.record = {
      kind: "portforward",
      namespace: scope.namespace,
      pod: scope.pod,
      ports: [...ports],
      protocol,
      state: "open",
      errors: [],
      bytesFromSource: 0,
      bytesFromClient: 0,
      peakQueuedToClient: 0,
      peakQueuedToSource: 0,
    };
    const encoding = protocol === "v4.base64.channel.k8s.io" ? "base64" : "binary";
    this.connection = new ChannelConnection(socket, encoding, highWaterMark, this.record);
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  start(resolveTarget: (port: number) => PortForwardTarget): void {
    this.socket.on("error", () => {});
    this.socket.on("close", () => {
      if (!this.closing) {
        this.closing = true;
        if (this.record.state === "open") this.record.state = "client-disconnected";
      }
      for (const target of this.targets) target?.destroy();
      this.resolveEnded();
    });
    this.ports.forEach((port, index) => {
      const portBytes = Buffer.alloc(2);
      portBytes.writeUInt16LE(port);
      this.connection.send(2 * index, portBytes);
      this.connection.send(2 * index + 1, portBytes);
    });
    this.openPorts = this.ports.length;
    this.ports.forEach((port, index) => {
      this.forward(index, resolveTarget(port));
    });

    this.socket.on("message", (data) => {
      const frame = decodeFrame(messageBytes(data), this.connection.encoding);
      // Error channels (odd) are write-only; frames for channels beyond the ports are dropped.
      if (!frame || frame.channel % 2 !== 0) return;
      const target = this.targets[frame.channel / 2];
      if (!target || target.destroyed || target.writableEnded) return;
      this.record.bytesFromClient += frame.payload.length;
      const accepted = target.write(frame.payload);
      this.record.peakQueuedToSource = Math.max(this.record.peakQueuedToSource, target.writableLength);
      if (!accepted && !this.blockedTargets.has(target)) {
        // The pod is not reading: stop reading the WebSocket, so the client's writes back up.
        this.blockedTargets.add(target);
        this.socket.pause();
        target.once("drain", () => {
          this.blockedTargets.delete(target);
          if (this.blockedTargets.size === 0) this.socket.resume();
        });
      }
    });
  }

  /** The pod is going away: its connections are reset, as its network namespace disappears. */
  resetConnections(): void {
    this.targets.forEach((target, index) => {
      if (!target || target.destroyed) return;
      // The forwarder's copy from the pod fails with a reset, which the kubelet reports on the error channel.
      const error = Object.assign(new Error("connection reset by peer"), { code: "ECONNRESET" });
      this.reportError(index, error);
      target.resetAndDestroy();
    });
  }

  /** Cuts the connection without a close frame, as when the API server or node goes away. */
  drop(): void {
    if (this.record.state === "open") this.record.state = "dropped";
    this.closing = true;
    this.socket.terminate();
  }

  private forward(index: number, destination: PortForwardTarget): void {
    const target = connect({ host: destination.host, port: destination.port });
    this.targets[index] = target;
    target.on("data", (chunk: Buffer) => {
      this.record.bytesFromSource += chunk.length;
      if (this.closing) return;
      if (!this.connection.send(2 * index, chunk)) {
        target.pause();
        this.connection.onceDrained(() => target.resume());
      }
    });
    target.on("error", (error: NodeJS.ErrnoException) => this.reportError(index, error));
    target.on("close", () => this.portDone());
  }

  private reportError(index: number, error: NodeJS.ErrnoException): void {
    if (this.failedPorts.has(index) || this.closing) return;
    this.failedPorts.add(index);
    const port = this.ports[index] as number;
    // The kubelet's words around the runtime's error; the runtime part approximates containerd's.
    const message = `error forwarding port ${port} to pod ${this.scope.sandboxId}, uid : failed to connect to localhost:${port} inside namespace "${this.scope.sandboxId}", IPv4: ${describeSocketError(error, port)}`;
    this.record.errors.push(message);
    this.connection.send(2 * index + 1, Buffer.from(message));
  }

  private portDone(): void {
    this.openPorts--;
    if (this.openPorts > 0 || this.closing) return;
    this.closing = true;
    this.record.state = "completed";
    void this.connection.flushed().then(() => this.socket.close(1000));
  }
}

function describeSocketError(error: NodeJS.ErrnoException, port: number): string {
  switch (error.code) {
    case "ECONNREFUSED":
      return `dial tcp4 127.0.0.1:${port}: connect: connection refused`;
    case "ECONNRESET":
      return `read tcp4 127.0.0.1:${port}: read: connection reset by peer`;
    case "EPIPE":
      return `write tcp4 127.0.0.1:${port}: write: broken pipe`;
    default:
      return error.message;
  }
}
