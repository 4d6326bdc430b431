// The `ws` package (8.x, installed with @kubernetes/client-node) typed with the few members used here:
// @types/ws is not installed, and the product must not gain a dependency for test infrastructure.
import type { EventEmitter } from "node:events";
import type { ClientRequest, IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { SecureContextOptions } from "node:tls";
// @ts-expect-error ws ships no type definitions and @types/ws is not installed
import { WebSocket as UntypedWebSocket, WebSocketServer as UntypedWebSocketServer } from "ws";

export interface WebSocketConnection extends EventEmitter {
  readonly protocol: string;
  readonly readyState: number;
  /** Bytes queued by `send` and not yet handed to the socket. */
  readonly bufferedAmount: number;
  /** Whether `pause()` is in effect. */
  readonly isPaused: boolean;
  send(data: Buffer | string, options: { binary: boolean }, callback?: (error?: Error) => void): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  /** Stops reading from the socket, so that the peer's writes back up (TCP flow control). */
  pause(): void;
  resume(): void;
  on(event: "message", listener: (data: Buffer, isBinary: boolean) => void): this;
  on(event: "close", listener: (code: number, reason: Buffer) => void): this;
  on(event: "error", listener: (error: Error) => void): this;
  on(event: "open", listener: () => void): this;
  on(
    event: "unexpected-response",
    listener: (request: ClientRequest, response: IncomingMessage) => void,
  ): this;
  once(event: "message", listener: (data: Buffer, isBinary: boolean) => void): this;
  once(event: "close", listener: (code: number, reason: Buffer) => void): this;
  once(event: "error", listener: (error: Error) => void): this;
  once(event: "open", listener: () => void): this;
  once(
    event: "unexpected-response",
    listener: (request: ClientRequest, response: IncomingMessage) => void,
  ): this;
}

export interface WebSocketClientOptions extends SecureContextOptions {
  headers?: Record<string, string>;
  rejectUnauthorized?: boolean;
  perMessageDeflate?: boolean;
}

export interface WebSocketServerOptions {
  noServer: true;
  perMessageDeflate: false;
  /** How long `close()` waits for the peer's close frame before destroying the socket. */
  closeTimeout: number;
  maxPayload?: number;
  /** Picks the subprotocol from those the client offered; without it, ws takes the first offered. */
  handleProtocols: (offered: Set<string>, request: IncomingMessage) => string | false;
}

export interface WebSocketUpgrader {
  handleUpgrade(
    request: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    callback: (connection: WebSocketConnection) => void,
  ): void;
  close(callback?: () => void): void;
}

export const WebSocketState = { connecting: 0, open: 1, closing: 2, closed: 3 } as const;

export const WebSocket = UntypedWebSocket as new (
  url: string,
  protocols?: string | string[],
  options?: WebSocketClientOptions,
) => WebSocketConnection;

export const WebSocketServer = UntypedWebSocketServer as new (
  options: WebSocketServerOptions,
) => WebSocketUpgrader;
