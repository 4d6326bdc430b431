// One exec session over a WebSocket, as the API server runs it: through its WebSocket→SPDY translator
// for v5.channel.k8s.io, or proxied to the kubelet's WebSocket server for the older subprotocols
// (FACTS.md §5). The wording of the statuses follows streamtranslator.go and the kubelet's exec.go.
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants } from "node:os";
import type { Readable } from "node:stream";
import { ChannelConnection, decodeFrame, type StreamStatistics } from "./channel-connection.js";
import {
  execStatus,
  internalErrorStatus,
  type KubeStatus,
  type StandInContainer,
  type StandInPod,
} from "./resources.js";
import { messageBytes, type WebSocketConnection } from "./ws.js";

export const execProtocols = [
  "v5.channel.k8s.io",
  "v4.channel.k8s.io",
  "v4.base64.channel.k8s.io",
  "channel.k8s.io",
  "base64.channel.k8s.io",
  "",
] as const;
export type ExecProtocol = (typeof execProtocols)[number];

const stdinChannel = 0;
const stdoutChannel = 1;
const stderrChannel = 2;
const statusChannel = 3;
const closeSignal = 255;

export interface ExecRequest {
  pod: StandInPod;
  namespace: string;
  container: StandInContainer;
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** Starts the command "inside the container": a local process whose stdio is piped as requested. */
export type ExecHandler = (request: ExecRequest) => ChildProcess;

export type StreamEnd = "open" | "completed" | "client-disconnected" | "dropped";

export interface ExecStreamRecord extends StreamStatistics {
  kind: "exec";
  namespace: string;
  pod: string;
  container: string;
  command: string[];
  protocol: ExecProtocol;
  state: StreamEnd;
  /** The status sent on channel 3 (or the text sent there by the pre-v4 protocols). */
  status?: KubeStatus;
  /** The local process id, while it runs. */
  pid?: number;
}

export class ExecSession {
  readonly record: ExecStreamRecord;
  /** Resolves when the WebSocket has closed. */
  readonly ended: Promise<void>;
  private readonly connection: ChannelConnection;
  private child: ChildProcess | undefined;
  private finished = false;
  private resolveEnded: () => void = () => {};

  constructor(
    private readonly socket: WebSocketConnection,
    readonly protocol: ExecProtocol,
    private readonly request: ExecRequest,
    highWaterMark: number,
  ) {
    this.record = {
      kind: "exec",
      namespace: request.namespace,
      pod: request.pod.name,
      container: request.container.name,
      command: [...request.command],
      protocol,
      state: "open",
      bytesFromSource: 0,
      bytesFromClient: 0,
      peakQueuedToClient: 0,
      peakQueuedToSource: 0,
    };
    const encoding = protocol.includes("base64") ? "base64" : "binary";
    this.connection = new ChannelConnection(socket, encoding, highWaterMark, this.record);
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  /** The v5 path is the API server's translator; every other subprotocol reaches the kubelet. */
  private get translated(): boolean {
    return this.protocol === "v5.channel.k8s.io";
  }

  start(spawnCommand: ExecHandler): void {
    const { request } = this;
    this.socket.on("close", () => this.onSocketClosed());
    this.socket.on("error", () => {});
    // "Send an empty message to the lowest writable channel to notify the client the connection is established."
    this.connection.send(
      request.stdout ? stdoutChannel : request.stderr ? stderrChannel : statusChannel,
      Buffer.alloc(0),
    );

    let child: ChildProcess;
    try {
      child = spawnCommand(request);
    } catch (error) {
      this.finish(this.startFailureStatus(error as NodeJS.ErrnoException));
      return;
    }
    this.child = child;
    this.record.pid = child.pid;
    let startFailure: NodeJS.ErrnoException | undefined;
    child.on("error", (error: NodeJS.ErrnoException) => {
      if (child.pid === undefined) startFailure = error;
    });
    child.stdin?.on("error", () => {});
    this.pipeOutput(child.stdout, stdoutChannel);
    this.pipeOutput(child.stderr, stderrChannel);
    // 'close' comes after the process has exited and its stdout and stderr have ended, so the status
    // follows the last output frame, as the translator writes it only after both are fully copied.
    child.on("close", (code: number | null, signal: NodeJS.Signals | null) => {
      this.record.pid = undefined;
      if (startFailure) this.finish(this.startFailureStatus(startFailure));
      else this.finish(this.exitStatus(code ?? 128 + (signal ? constants.signals[signal] : 0)));
    });

    this.socket.on("message", (data) => {
      const frame = decodeFrame(messageBytes(data), this.connection.encoding);
      if (!frame || this.finished) return;
      if (frame.channel === closeSignal && this.translated) {
        // v5: [255, n] half-closes channel n; only stdin is readable by the server.
        if (frame.payload[0] === stdinChannel) child.stdin?.end();
        return;
      }
      if (frame.channel !== stdinChannel || !request.stdin || !child.stdin || child.stdin.writableEnded)
        return;
      this.record.bytesFromClient += frame.payload.length;
      const accepted = child.stdin.write(frame.payload);
      this.record.peakQueuedToSource = Math.max(this.record.peakQueuedToSource, child.stdin.writableLength);
      if (!accepted) {
        this.socket.pause();
        child.stdin.once("drain", () => this.socket.resume());
      }
    });
  }

  /** The container is going away (pod deleted): its processes die with SIGKILL, as in a real container. */
  killProcess(): void {
    const child = this.child;
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
    try {
      // The default handler starts each command in its own process group, like a container's processes.
      process.kill(-child.pid, "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
  }

  /** Cuts the connection without a status or close frame, as when the API server or node goes away. */
  drop(): void {
    if (this.record.state === "open") this.record.state = "dropped";
    this.finished = true;
    this.socket.terminate();
  }

  private pipeOutput(stream: Readable | null, channel: number): void {
    if (!stream) return;
    stream.on("data", (chunk: Buffer) => {
      this.record.bytesFromSource += chunk.length;
      if (this.finished) return;
      if (!this.connection.send(channel, chunk)) {
        // The client is not reading fast enough: stop reading the pipe, so the process blocks in write().
        stream.pause();
        this.connection.onceDrained(() => stream.resume());
      }
    });
  }

  private exitStatus(exitCode: number): KubeStatus {
    if (exitCode === 0) return execStatus({ status: "Success" });
    const cause = this.translated
      ? `command terminated with exit code ${exitCode}`
      : `error executing command [${this.request.command.join(" ")}], exit code ${exitCode}`;
    return execStatus({
      status: "Failure",
      message: `command terminated with non-zero exit code: ${cause}`,
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: String(exitCode) }] },
    });
  }

  /** The command could not be started: the runtime's error, as containerd and runc word it. */
  private startFailureStatus(error: NodeJS.ErrnoException): KubeStatus {
    const executable = this.request.command[0] ?? "";
    const reason =
      error.code === "ENOENT"
        ? `exec: "${executable}": executable file not found in $PATH`
        : error.code === "EACCES"
          ? `exec: "${executable}": permission denied`
          : error.message;
    const execId = randomBytes(32).toString("hex");
    const kubeletStatus = internalErrorStatus(
      `error executing command in container: failed to exec in container: failed to start exec "${execId}": OCI runtime exec failed: exec failed: unable to start container process: ${reason}: unknown`,
    );
    // The translator's SPDY client turns the kubelet's status into a plain error, which it wraps again.
    return this.translated ? internalErrorStatus(kubeletStatus.message as string) : kubeletStatus;
  }

  private finish(status: KubeStatus): void {
    if (this.finished) return;
    this.finished = true;
    this.record.status = status;
    this.child?.stdin?.end();
    if (this.protocol.startsWith("v4.") || this.translated) {
      this.connection.send(statusChannel, Buffer.from(JSON.stringify(status)));
    } else if (status.status !== "Success") {
      // channel.k8s.io and base64.channel.k8s.io (remote command v1): the error text only, on failure.
      this.connection.send(statusChannel, Buffer.from(status.message ?? ""));
    }
    this.record.state = "completed";
    // The close frame follows the queued output; ws then waits for the client's close frame (the
    // translator's finish() waits up to 15 minutes), so a slow reader still gets every byte.
    this.socket.close(1000);
  }

  private onSocketClosed(): void {
    if (!this.finished) {
      // The client went away mid-stream. The kubelet closes the streams; the process is not killed:
      // it gets EPIPE/SIGPIPE on its next write, or runs on if it writes nothing.
      this.finished = true;
      this.record.state = "client-disconnected";
      this.child?.stdout?.destroy();
      this.child?.stderr?.destroy();
      this.child?.stdin?.destroy();
    }
    this.resolveEnded();
  }
}
