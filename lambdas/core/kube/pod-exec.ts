// One command run in a container through the exec API, its stdout as a Readable with flow control: when
// the consumer is full the WebSocket is paused, so TCP flow control stops the API server, which stops
// reading the command's pipe, which blocks the command. stderr is kept (bounded) for error messages, and
// the status on channel 3 decides the outcome: a connection that ends without one is a failure.
import { Readable } from "node:stream";
import type { KubeConfig } from "@kubernetes/client-node";
import { KubeRequestError } from "./kube-request.js";
import { ExecChannel, type KubeWebSocket, openKubeWebSocket } from "./kube-websocket.js";

export interface PodContainer {
  namespace: string;
  name: string;
  container: string;
}

/** Why an exec did not succeed, for the caller to turn into one of the product's named errors. */
export type ExecFailure =
  | { kind: "connect"; error: KubeRequestError }
  /** The command ran and exited non-zero (status reason NonZeroExitCode). */
  | { kind: "exit"; exitCode: number; stderr: string }
  /** The API server or kubelet reported another failure, e.g. the executable was not found. */
  | { kind: "status"; reason: string; message: string; stderr: string }
  /** The connection ended without a status: dropped by the API server, a node or the network. */
  | { kind: "dropped"; detail: string; stderr: string }
  /** The output was not what the caller can accept (too long). */
  | { kind: "output"; detail: string; stderr: string };

export interface PodExecOptions {
  kubeConfig: KubeConfig;
  pod: PodContainer;
  command: string[];
  /** Turns a failure into the error the stream is destroyed with. */
  describeFailure: (failure: ExecFailure) => Error;
  /** Bytes buffered in this Readable before the WebSocket is paused. */
  highWaterMark?: number;
  /** stderr bytes kept (the last ones) for messages. */
  stderrLimit?: number;
  /** How often the connection is pinged (openKubeWebSocket's default when absent). */
  keepAliveMs?: number;
}

/** Offered in this order: v5 is what the API server's own translator speaks, v4 what kubelets behind older API servers speak. */
const execProtocols = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const maxLineBytes = 4096;

export class PodExecStream extends Readable {
  /** stdout bytes received so far. */
  bytesReceived = 0;
  private socket: KubeWebSocket | undefined;
  private statusSeen = false;
  private stderrTail = "";
  private lineBuffer = "";
  private readonly stderrLimit: number;

  constructor(private readonly options: PodExecOptions) {
    super({ highWaterMark: options.highWaterMark ?? 1024 * 1024 });
    this.stderrLimit = options.stderrLimit ?? 16 * 1024;
    void this.connect();
  }

  /** The last stderr bytes received, as text. */
  get stderr(): string {
    return this.stderrTail;
  }

  override _read(): void {
    this.socket?.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Closing the connection makes the kubelet close the command's pipes: its next write fails, and the
    // snapshot script removes its temporary file on the way out.
    const socket = this.socket;
    if (socket && socket.readyState <= 1) socket.terminate();
    callback(error);
  }

  private async connect(): Promise<void> {
    const { pod, command } = this.options;
    const query = new URLSearchParams({ container: pod.container, stdout: "true", stderr: "true" });
    for (const part of command) query.append("command", part);
    const path = `/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/pods/${encodeURIComponent(pod.name)}/exec?${query}`;
    try {
      await openKubeWebSocket(
        this.options.kubeConfig,
        {
          path,
          protocols: execProtocols,
          where: `exec in pod ${pod.namespace}/${pod.name} container ${pod.container}`,
          ...(this.options.keepAliveMs === undefined ? {} : { keepAliveMs: this.options.keepAliveMs }),
        },
        {
          open: (socket) => {
            if (this.destroyed) socket.terminate();
            else this.socket = socket;
          },
          message: (data, isBinary) => this.accept(data, isBinary),
          close: (code, reason) => this.onClose(code, reason),
        },
      );
    } catch (error) {
      if (error instanceof KubeRequestError) {
        this.fail({ kind: "connect", error });
      } else {
        this.destroy(error as Error);
      }
    }
  }

  private onClose(code: number, reason: Buffer): void {
    if (this.statusSeen || this.destroyed) return;
    const why = reason.length > 0 ? `: ${reason.toString("utf8")}` : "";
    this.fail({
      kind: "dropped",
      detail: `the connection closed (WebSocket code ${code}${why}) after ${this.bytesReceived} bytes of output, without an exit status`,
      stderr: this.stderrTail,
    });
  }

  private accept(data: Buffer, isBinary: boolean): void {
    if (this.statusSeen || this.destroyed || !isBinary || data.length === 0) return;
    const channel = data[0] as number;
    const payload = data.subarray(1);
    switch (channel) {
      case ExecChannel.stdout:
        if (payload.length === 0) return;
        this.bytesReceived += payload.length;
        if (!this.push(payload)) this.socket?.pause();
        return;
      case ExecChannel.stderr:
        this.captureStderr(payload);
        return;
      case ExecChannel.status:
        this.statusSeen = true;
        this.finish(payload);
        return;
      default:
        // v5's [255, n] closes channel n; nothing to do for a reader that waits for the status.
        return;
    }
  }

  private captureStderr(payload: Buffer): void {
    const text = payload.toString("utf8");
    this.stderrTail = (this.stderrTail + text).slice(-this.stderrLimit);
    this.lineBuffer += text;
    let newline = this.lineBuffer.indexOf("\n");
    while (newline >= 0) {
      this.onStderrLine(this.lineBuffer.slice(0, newline));
      this.lineBuffer = this.lineBuffer.slice(newline + 1);
      newline = this.lineBuffer.indexOf("\n");
    }
    if (this.lineBuffer.length > maxLineBytes) this.lineBuffer = this.lineBuffer.slice(-maxLineBytes);
  }

  private finish(statusBytes: Buffer): void {
    const socket = this.socket;
    // Every output frame precedes the status; the translator then waits for the client to close.
    socket?.resume();
    socket?.close(1000);
    const status = parseStatus(statusBytes);
    if (status.status === "Success") {
      const problem = this.checkSuccess();
      if (problem) this.destroy(problem);
      else this.push(null);
      return;
    }
    const exitCode = exitCodeOf(status);
    if (status.reason === "NonZeroExitCode" && exitCode !== undefined) {
      this.fail({ kind: "exit", exitCode, stderr: this.stderrTail });
    } else {
      this.fail({
        kind: "status",
        reason: status.reason ?? "Unknown",
        message: status.message ?? statusBytes.toString("utf8").slice(0, 1000),
        stderr: this.stderrTail,
      });
    }
  }

  /** Each complete stderr line (at most 4 KiB) as it arrives. */
  protected onStderrLine(_line: string): void {}

  /** Runs once the status said Success, before the stream ends; an error returned fails the stream. */
  protected checkSuccess(): Error | undefined {
    return undefined;
  }

  private fail(failure: ExecFailure): void {
    if (this.destroyed) return;
    this.destroy(this.options.describeFailure(failure));
  }
}

interface ExecStatus {
  status?: string;
  reason?: string;
  message?: string;
  details?: { causes?: Array<{ reason?: string; message?: string }> };
}

function parseStatus(bytes: Buffer): ExecStatus {
  try {
    const parsed = JSON.parse(bytes.toString("utf8")) as unknown;
    if (parsed !== null && typeof parsed === "object") return parsed as ExecStatus;
  } catch {
    // fall through: not a metav1.Status
  }
  return { status: "Failure", reason: "InvalidStatus", message: bytes.toString("utf8").slice(0, 1000) };
}

function exitCodeOf(status: ExecStatus): number | undefined {
  const cause = status.details?.causes?.find((entry) => entry.reason === "ExitCode");
  const code = Number(cause?.message);
  return cause && Number.isInteger(code) ? code : undefined;
}

/** Runs a command to completion and returns its stdout (at most `maxBytes`). */
export async function runPodCommand(options: PodExecOptions & { maxBytes?: number }): Promise<Buffer> {
  const maxBytes = options.maxBytes ?? 1024 * 1024;
  const stream = new PodExecStream(options);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      const detail = `the output exceeded ${maxBytes} bytes`;
      const error = options.describeFailure({ kind: "output", detail, stderr: stream.stderr });
      stream.destroy(error);
      throw error;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
