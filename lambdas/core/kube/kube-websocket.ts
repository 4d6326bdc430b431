// WebSockets to the Kubernetes API's streaming subresources (pods/exec, pods/portforward), opened with the
// KubeConfig's own credentials (`applyToHTTPSOptions`: CA, client certificate, bearer or exec-plugin token,
// proxy agent), and the channel framing both use (FACTS.md §5). Built on `ws` directly rather than on
// @kubernetes/client-node's WebSocketHandler, which never pauses the socket (so a slow consumer makes it
// buffer without bound) and routes v5 close frames to process.stdout.
import type { KubeConfig } from "@kubernetes/client-node";
import { type RawData, WebSocket } from "ws";
import {
  credentialedRequestOptions,
  KubeRequestError,
  type KubeRequestFailure,
  readBounded,
  statusMessage,
} from "./kube-request.js";

/** A `ws` 8 client socket; its messages arrive as Buffers (binaryType "nodebuffer", ws's default). */
export type KubeWebSocket = WebSocket;

/** A message's bytes: a Buffer with ws's default binaryType, which nothing here changes. */
export function messageBytes(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
}

/** Channel numbers of the remote-command protocol (exec); port-forward uses 2i and 2i+1 per port. */
export const ExecChannel = { stdin: 0, stdout: 1, stderr: 2, status: 3, resize: 4, close: 255 } as const;

export interface OpenKubeWebSocketOptions {
  /** Path and query below the cluster's server URL, e.g. `/api/v1/namespaces/x/pods/y/exec?...`. */
  path: string;
  /** Subprotocols offered, most preferred first. */
  protocols: string[];
  /** Names the request in error messages. */
  where: string;
  handshakeTimeoutMs?: number;
  /** How often a ping goes out while the connection is open. Default 30 s. */
  keepAliveMs?: number;
}

/**
 * A connection can carry nothing for minutes (etcdctl saving the snapshot in the pod before a byte
 * streams): a ping every 30 s keeps load balancers and NAT gateways, which drop connections idle for
 * 350 s (EKS's endpoint, AWS NAT), from cutting it.
 */
const defaultKeepAliveMs = 30_000;

/**
 * Attached when the socket is created: a server may send its first frames, and even close, in the same
 * TCP read as the handshake's answer, before a caller awaiting the connection could add listeners.
 */
export interface KubeWebSocketHandlers {
  /** In the "open" event, before any message. */
  open(socket: KubeWebSocket): void;
  message(data: Buffer, isBinary: boolean): void;
  /** Once, after "open" only; an error (passed to `error` first) is always followed by this. */
  close(code: number, reason: Buffer): void;
  error?(error: Error): void;
}

/**
 * Opens a WebSocket to the current cluster of `kubeConfig`. Credentials are applied per connection, so a
 * token that an exec plugin refreshes (EKS) is fresh for each one. Rejects with a KubeRequestError when
 * the connection cannot be opened; once open, everything goes through `handlers`.
 */
export async function openKubeWebSocket(
  kubeConfig: KubeConfig,
  options: OpenKubeWebSocketOptions,
  handlers: KubeWebSocketHandlers,
): Promise<KubeWebSocket> {
  const { server, options: connectionOptions } = await credentialedRequestOptions(kubeConfig, options.where);
  let socket: KubeWebSocket;
  try {
    socket = new WebSocket(webSocketUrl(server, options.path), options.protocols, {
      ...connectionOptions,
      perMessageDeflate: false,
      handshakeTimeout: options.handshakeTimeoutMs ?? 30_000,
    });
  } catch (error) {
    // An unusable server URL in the kubeconfig.
    throw new KubeRequestError({ kind: "unreachable", message: String(error), cause: error }, options.where);
  }
  return new Promise((resolve, reject) => {
    let settled = false;
    let opened = false;
    const fail = (failure: KubeRequestFailure) => {
      if (settled) return;
      settled = true;
      socket.terminate();
      reject(new KubeRequestError(failure, options.where));
    };
    socket.on("open", () => {
      if (settled) return;
      settled = true;
      opened = true;
      const keepAlive = setInterval(() => {
        if (socket.readyState === WebSocket.OPEN) socket.ping();
      }, options.keepAliveMs ?? defaultKeepAliveMs);
      keepAlive.unref();
      socket.once("close", () => clearInterval(keepAlive));
      handlers.open(socket);
      resolve(socket);
    });
    socket.on("message", (data, isBinary) => handlers.message(messageBytes(data), isBinary));
    socket.on("error", (error) => {
      if (opened) handlers.error?.(error);
      else fail({ kind: "unreachable", message: error.message, cause: error });
    });
    socket.on("close", (code, reason) => {
      // Before "open", an "error" or "unexpected-response" settles the outcome.
      if (opened) handlers.close(code, reason);
    });
    socket.on("unexpected-response", (request, response) => {
      const httpStatus = response.statusCode ?? 0;
      void readBounded(response, 64 * 1024).then((body) => {
        request.destroy();
        fail({ kind: "refused", httpStatus, message: statusMessage(body, response.statusMessage) });
      });
    });
  });
}

function webSocketUrl(server: string, path: string): string {
  const base = server.replace(/\/+$/, "");
  if (base.startsWith("https://")) return `wss://${base.slice("https://".length)}${path}`;
  if (base.startsWith("http://")) return `ws://${base.slice("http://".length)}${path}`;
  return `wss://${base}${path}`;
}

/** `[channel][payload]`, the binary framing of `v4.channel.k8s.io` and `v5.channel.k8s.io`. */
export function encodeChannelFrame(channel: number, payload: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(payload.length + 1);
  frame[0] = channel;
  payload.copy(frame, 1);
  return frame;
}
