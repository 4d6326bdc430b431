// A stand-in Kubernetes API server for tests: see stand-in.ts.
export type { ExecHandler, ExecProtocol, ExecRequest, ExecStreamRecord } from "./exec-session.js";
export type { PortForwardStreamRecord, PortForwardTarget } from "./port-forward-session.js";
export type { KubeStatus, StandInContainer, StandInPod, StandInSecret } from "./resources.js";
export {
  type AuthorizationAttributes,
  type BearerTokenUser,
  type CreatedObject,
  type KubeApiStandIn,
  type KubeApiStandInOptions,
  type RecordedRequest,
  type StreamRecord,
  startKubeApiStandIn,
} from "./stand-in.js";
export { messageBytes, WebSocket, type WebSocketConnection } from "./ws.js";
