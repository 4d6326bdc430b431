// The Kubernetes channel framing over a WebSocket (FACTS.md §5): each message is a channel byte and a
// payload, or, for the base64 subprotocols, an ASCII digit and the payload in base64. Sending keeps
// count of the bytes not yet taken by the kernel, so that producers pause instead of queueing without
// bound — a Go server blocks in write() and gets this for free.
import type { WebSocketConnection } from "./ws.js";

export type ChannelEncoding = "binary" | "base64";

export interface ChannelFrame {
  channel: number;
  payload: Buffer;
}

/** Counters of one stream, for tests that check flow control and least privilege. */
export interface StreamStatistics {
  /** Payload bytes taken from the process or target connection. */
  bytesFromSource: number;
  /** Payload bytes received from the client. */
  bytesFromClient: number;
  /** The most bytes ever queued towards the client and not yet written to the socket. */
  peakQueuedToClient: number;
  /** The most bytes ever queued towards the process or target and not yet taken by it. */
  peakQueuedToSource: number;
}

export function encodeFrame(channel: number, payload: Buffer, encoding: ChannelEncoding): Buffer | string {
  if (encoding === "base64") return String.fromCharCode(48 + channel) + payload.toString("base64");
  const frame = Buffer.allocUnsafe(payload.length + 1);
  frame[0] = channel;
  payload.copy(frame, 1);
  return frame;
}

/** Splits a client message into channel and payload; undefined for messages a server ignores. */
export function decodeFrame(data: Buffer, encoding: ChannelEncoding): ChannelFrame | undefined {
  if (data.length === 0) return undefined;
  const first = data[0] as number;
  if (encoding === "binary") return { channel: first, payload: data.subarray(1) };
  const text = data.subarray(1).toString("latin1");
  // wsstream drops frames that are not valid base64 (it logs and continues).
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return undefined;
  return { channel: first - 48, payload: Buffer.from(text, "base64") };
}

export class ChannelConnection {
  private queuedBytes = 0;
  private drainListeners: Array<() => void> = [];

  constructor(
    readonly socket: WebSocketConnection,
    readonly encoding: ChannelEncoding,
    private readonly highWaterMark: number,
    private readonly statistics: StreamStatistics,
  ) {}

  /** Queues one frame. Returns false when the caller should stop producing until `onceDrained`. */
  send(channel: number, payload: Buffer): boolean {
    const frame = encodeFrame(channel, payload, this.encoding);
    const size = frame.length;
    this.queuedBytes += size;
    this.statistics.peakQueuedToClient = Math.max(this.statistics.peakQueuedToClient, this.queuedBytes);
    // The callback runs once the socket has taken the frame (or with an error once it is gone).
    this.socket.send(frame, { binary: this.encoding === "binary" }, () => {
      this.queuedBytes -= size;
      if (this.queuedBytes <= this.highWaterMark / 2) this.notifyDrained();
    });
    return this.queuedBytes < this.highWaterMark;
  }

  /** Sends a frame that is not channel-encoded (the v5 close signal is always binary). */
  sendRaw(frame: Buffer): void {
    this.socket.send(frame, { binary: true });
  }

  onceDrained(listener: () => void): void {
    if (this.queuedBytes <= this.highWaterMark / 2) {
      listener();
      return;
    }
    this.drainListeners.push(listener);
  }

  /** Resolves when every frame queued so far has been written to the socket. */
  flushed(): Promise<void> {
    if (this.queuedBytes === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.queuedBytes === 0) resolve();
        else this.drainListeners.push(check);
      };
      this.drainListeners.push(check);
    });
  }

  private notifyDrained(): void {
    const listeners = this.drainListeners;
    this.drainListeners = [];
    for (const listener of listeners) listener();
  }
}
