// The stand-in's WebSockets: `ws` 8 (installed with @kubernetes/client-node), as the product uses it.
import { WebSocketServer as TypedWebSocketServer, WebSocket } from "ws";

export { messageBytes } from "../../../lambdas/core/kube/kube-websocket.js";
export { WebSocket };
export type WebSocketConnection = WebSocket;

/**
 * ws's server options plus `closeTimeout` (how long `close()` waits for the peer's close frame before
 * destroying the socket), which ws 8 accepts and @types/ws does not list.
 */
export type WebSocketServerOptions = ConstructorParameters<typeof TypedWebSocketServer>[0] & {
  closeTimeout?: number;
};

export class WebSocketServer extends TypedWebSocketServer {
  constructor(options: WebSocketServerOptions) {
    super(options);
  }
}
