// A stand-in Kubernetes API server: the subset of the API the product uses (discovery, pods, secrets,
// exec and port-forward over WebSocket), served faithfully enough that the real kubectl and
// @kubernetes/client-node work against it. Commands run as local processes, port-forwards reach local
// ports. Authentication is enforced and every request is recorded, with the verbs it was authorized for.
import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { text } from "node:stream/consumers";
import type { TLSSocket } from "node:tls";
import { makeTempDir } from "../temp-dir.js";
import { createTestCertificates, type TestCertificates } from "../test-certificates.js";
import {
  type CreatedPodRunnerOptions,
  type PodRun,
  type PodRunState,
  type PostedPodSpec,
  runCreatedPod,
} from "./created-pod-runner.js";
import {
  type ExecHandler,
  type ExecProtocol,
  type ExecRequest,
  ExecSession,
  type ExecStreamRecord,
  execProtocols,
} from "./exec-session.js";
import { type KubeconfigCredentials, writeKubeconfig } from "./kubeconfig.js";
import {
  type PortForwardProtocol,
  PortForwardSession,
  type PortForwardStreamRecord,
  type PortForwardTarget,
  portForwardProtocols,
} from "./port-forward-session.js";
import {
  apiGroupList,
  apiVersions,
  badRequestStatus,
  containerNames,
  coreV1ResourceList,
  deriveUid,
  failureStatus,
  type KubeStatus,
  methodNotAllowedStatus,
  notFoundStatus,
  pathNotFoundStatus,
  podIP,
  podNodeName,
  podPhase,
  renderEvent,
  renderNamespace,
  renderPod,
  renderPodList,
  renderPodTable,
  renderSecret,
  type StandInPod,
  type StandInSecret,
  type StoredEvent,
  type StoredPod,
  type StoredSecret,
  selectableEventFields,
  storePod,
  unauthorizedStatus,
  versionInfo,
} from "./resources.js";
import {
  eventSelectableFields,
  parseFieldSelector,
  parseLabelSelector,
  podSelectableFields,
  SelectorError,
  secretSelectableFields,
} from "./selectors.js";
import { WebSocketServer } from "./ws.js";

export interface BearerTokenUser {
  token: string;
  user: string;
  groups?: string[];
}

export interface AuthorizationAttributes {
  user: string;
  groups: string[];
  verb: string;
  /** False for non-resource paths such as /version and /api. */
  resourceRequest: boolean;
  path: string;
  namespace?: string;
  resource?: string;
  subresource?: string;
  name?: string;
}

export interface KubeApiStandInOptions {
  pods?: StandInPod[];
  secrets?: StandInSecret[];
  /** Namespaces that exist besides the four of a new cluster and those of the pods and secrets. */
  namespaces?: string[];
  /** Starts an exec'd command; by default it is spawned locally, in its own process group. */
  execHandler?: ExecHandler;
  /** Where a port-forward to a pod's port connects; by default the pod's `portMap`, else 127.0.0.1:port. */
  portForwardTarget?: (pod: StandInPod, port: number) => PortForwardTarget;
  auth?: {
    /** Accepted bearer tokens; a bare string authenticates as user "stand-in-user". Default: one random token. */
    bearerTokens?: Array<string | BearerTokenUser>;
    /** Accept client certificates signed by the stand-in's CA (user = CN, groups = O). Needs TLS. */
    clientCertificates?: boolean;
  };
  /** Decides each authenticated request (RBAC's place); everything is allowed by default. */
  authorize?: (attributes: AuthorizationAttributes) => boolean;
  /**
   * WebSocket upgrades of pods/exec and pods/portforward are also checked for `create`, as with the
   * feature gate AuthorizePodWebsocketUpgradeCreatePermission (beta and on by default from 1.35);
   * before that, the GET of the handshake needed only `get`. Default true.
   */
  websocketUpgradeNeedsCreate?: boolean;
  /** Serve HTTPS with a throw-away CA (default true); client certificates need it. */
  tls?: boolean;
  /** Exec subprotocols served; leave out v5.channel.k8s.io to stand in for a server without the translator. */
  execProtocols?: ExecProtocol[];
  /** The gitVersion served at /version. */
  serverVersion?: string;
  /** The namespace of the kubeconfig's context, if any. */
  kubeconfigNamespace?: string;
  /** Bytes queued towards a client before the command's output or the target connection is paused. */
  highWaterMark?: number;
  /**
   * Play the kubelet for pods created through the API that name a node: run each as a local process
   * (created-pod-runner.ts). Off by default: a created pod then stays Pending.
   */
  runCreatedPods?: boolean | CreatedPodRunnerOptions;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string[]>;
  /** The authenticated user, if any. */
  user?: string;
  /** The request verb as the API server's RequestInfo derives it (a WebSocket handshake is a GET: "get"). */
  verb: string;
  namespace?: string;
  resource?: string;
  subresource?: string;
  name?: string;
  /** Every verb the authorizer was asked about, in order (exec over WebSocket: "get", then "create"). */
  authorizedVerbs: string[];
  upgrade?: "websocket" | "spdy";
  /** The negotiated WebSocket subprotocol. */
  protocol?: string;
  /** Pings the client sent over the WebSocket (its keep-alive). */
  pings?: number;
  status: number;
}

export type StreamRecord = ExecStreamRecord | PortForwardStreamRecord;

export interface CreatedObject {
  resource: "pods" | "secrets";
  namespace: string;
  name: string;
  /** The request body, parsed. */
  object: Record<string, unknown>;
}

export interface KubeApiStandIn {
  url: string;
  /** The CA that signed the server certificate (TLS only). */
  caFile: string | undefined;
  caData: string | undefined;
  /** A client certificate the stand-in accepts when client certificates are enabled (CN etcd-backup). */
  clientCertificateFile: string | undefined;
  clientKeyFile: string | undefined;
  /** The first accepted bearer token, if any. */
  token: string | undefined;
  /** A kubeconfig with the first token, or else the client certificate. */
  kubeconfigPath: string;
  writeKubeconfig(credentials: KubeconfigCredentials & { clientCertificate?: boolean }): Promise<string>;
  requests: RecordedRequest[];
  streams: StreamRecord[];
  /** Adds a pod or replaces the one of the same namespace and name. */
  setPod(pod: StandInPod): void;
  /**
   * Deletes a pod: later requests see 404, its exec'd processes are killed (SIGKILL, as when the
   * container dies, so the client gets exit code 137) and its port-forward connections are reset.
   * `abrupt` instead cuts the WebSockets without status or close frame, as a lost node would.
   * The namespace may be left out when only one pod has that name.
   */
  deletePod(name: string, options?: { namespace?: string; abrupt?: boolean }): void;
  /** Every pod and secret created through the API (POST), as the client sent it, in order. */
  created: CreatedObject[];
  /** The created pods run as local processes (`runCreatedPods`), by "namespace/name", latest run last. */
  podRuns: Map<string, PodRun>;
  stop(): Promise<void>;
}

const defaultHighWaterMark = 1024 * 1024;
// The translator's finish() waits up to 15 minutes for the client to close after the status.
const closeTimeoutMs = 15 * 60 * 1000;

interface RequestInfo {
  resourceRequest: boolean;
  verb: string;
  namespace?: string;
  resource?: string;
  subresource?: string;
  name?: string;
}

interface Identity {
  user: string;
  groups: string[];
}

interface Reply {
  status: number;
  body: unknown;
}

export async function startKubeApiStandIn(options: KubeApiStandInOptions = {}): Promise<KubeApiStandIn> {
  const temp = await makeTempDir("kube-api");
  const useTls = options.tls ?? true;
  const certificates: TestCertificates | undefined = useTls
    ? await createTestCertificates(temp.path)
    : undefined;
  const acceptClientCertificates = options.auth?.clientCertificates ?? false;
  if (acceptClientCertificates && !certificates)
    throw new Error("client certificate authentication needs tls: true");
  const tokens = new Map<string, Identity>();
  const configuredTokens =
    options.auth?.bearerTokens ??
    (acceptClientCertificates
      ? []
      : [`stand-in-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`]);
  for (const entry of configuredTokens) {
    const user = typeof entry === "string" ? { token: entry, user: "stand-in-user" } : entry;
    tokens.set(user.token, { user: user.user, groups: [...(user.groups ?? []), "system:authenticated"] });
  }
  const highWaterMark = options.highWaterMark ?? defaultHighWaterMark;
  const servedExecProtocols = options.execProtocols ?? [...execProtocols];
  const websocketUpgradeNeedsCreate = options.websocketUpgradeNeedsCreate ?? true;
  const execHandler = options.execHandler ?? spawnLocally;

  const startedAt = new Date();
  let resourceVersion = 1000;
  const nextResourceVersion = () => String(++resourceVersion);
  const pods = new Map<string, StoredPod>();
  const secrets = new Map<string, StoredSecret>();
  const setPod = (pod: StandInPod) => {
    const key = `${pod.namespace ?? "default"}/${pod.name}`;
    const createdAt = pods.get(key)?.createdAt ?? new Date();
    pods.set(key, storePod(pod, createdAt, nextResourceVersion()));
  };
  for (const pod of options.pods ?? []) setPod(pod);
  for (const secret of options.secrets ?? []) {
    const namespace = secret.namespace ?? "default";
    secrets.set(`${namespace}/${secret.name}`, {
      spec: secret,
      namespace,
      uid: deriveUid(`secret/${namespace}/${secret.name}`),
      resourceVersion: nextResourceVersion(),
      createdAt: startedAt,
    });
  }

  function removePod(name: string, deleteOptions: { namespace?: string; abrupt?: boolean } = {}): void {
    const candidates = [...pods.values()].filter(
      (pod) => pod.spec.name === name && (deleteOptions.namespace ?? pod.namespace) === pod.namespace,
    );
    const [pod] = candidates;
    if (!pod || candidates.length > 1) {
      throw new Error(`deletePod: ${candidates.length} pods named ${name}; give the namespace`);
    }
    const namespace = pod.namespace;
    pods.delete(`${namespace}/${name}`);
    resourceVersion++;
    const run = podRuns.get(`${namespace}/${name}`);
    if (run) stoppingRuns.push(run.stop());
    for (const session of sessions) {
      if (session.record.namespace !== namespace || session.record.pod !== name) continue;
      if (session instanceof ExecSession) session.killProcess();
      else session.resetConnections();
      if (deleteOptions.abrupt) session.drop();
    }
  }

  const requests: RecordedRequest[] = [];
  const streams: StreamRecord[] = [];
  const created: CreatedObject[] = [];
  const podRuns = new Map<string, PodRun>();
  const stoppingRuns: Array<Promise<void>> = [];
  const runnerOptions =
    options.runCreatedPods === true ? {} : options.runCreatedPods ? options.runCreatedPods : undefined;
  /** As the kubelet: runs a created pod bound to a node, and reports its state on the stored pod. */
  const runPod = (namespace: string, name: string, spec: PostedPodSpec) => {
    const key = `${namespace}/${name}`;
    const stored = pods.get(key);
    const report = (state: PodRunState) => {
      const current = pods.get(key);
      // A deleted pod is not brought back by its last report; a new pod of the same name is not this one.
      if (!current || current.uid !== stored?.uid) return;
      setPod({
        ...current.spec,
        phase: state.phase,
        containers: current.spec.containers.map((container) => ({
          ...container,
          exitCode: "exitCode" in state ? state.exitCode : undefined,
          waitingReason: "waitingReason" in state ? state.waitingReason : undefined,
          waitingMessage: "waitingMessage" in state ? state.waitingMessage : undefined,
        })),
      });
      if ("event" in state) recordPodEvent(current, state.event);
    };
    const podDir = join(temp.path, "pods", namespace, name, String(Date.now()));
    const secretData = (secretName: string) => {
      const data = secrets.get(`${namespace}/${secretName}`)?.spec.data;
      if (!data) return undefined;
      return Object.fromEntries(Object.entries(data).map(([field, value]) => [field, Buffer.from(value)]));
    };
    runCreatedPod(namespace, spec, podDir, secretData, report, runnerOptions).then(
      (run) => {
        podRuns.set(key, run);
        // Deleted while it was being set up: stopped as the deletion would have stopped it.
        if (pods.get(key)?.uid !== stored?.uid) stoppingRuns.push(run.stop());
      },
      (error: unknown) =>
        report({
          phase: "Pending",
          waitingReason: "CreateContainerError",
          waitingMessage: String(error),
          event: { reason: "Failed", message: `Error: ${String(error)}` },
        }),
    );
  };
  const events: StoredEvent[] = [];
  /** A Warning event about a pod, as its node's kubelet records one (repeats counted on the same event). */
  const recordPodEvent = (pod: StoredPod, event: { reason: string; message: string }) => {
    const now = new Date();
    const repeated = events.find(
      (existing) =>
        existing.involvedObject.uid === pod.uid &&
        existing.reason === event.reason &&
        existing.message === event.message,
    );
    if (repeated) {
      repeated.count++;
      repeated.lastTimestamp = now;
      repeated.resourceVersion = nextResourceVersion();
      return;
    }
    events.push({
      name: `${pod.spec.name}.${(now.getTime() * 1000 + events.length).toString(16)}`,
      namespace: pod.namespace,
      uid: deriveUid(`event/${pod.uid}/${events.length}`),
      resourceVersion: nextResourceVersion(),
      involvedObject: { kind: "Pod", namespace: pod.namespace, name: pod.spec.name, uid: pod.uid },
      ...event,
      type: "Warning",
      count: 1,
      firstTimestamp: now,
      lastTimestamp: now,
      host: podNodeName(pod),
    });
  };
  const sessions = new Set<ExecSession | PortForwardSession>();
  const sockets = new Set<Socket>();
  const selectedProtocols = new WeakMap<IncomingMessage, string>();
  const upgrader = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    closeTimeout: closeTimeoutMs,
    handleProtocols: (_offered, request) => selectedProtocols.get(request) ?? false,
  });

  const portForwardTarget =
    options.portForwardTarget ??
    ((pod: StandInPod, port: number): PortForwardTarget => {
      const mapped = pod.portMap?.[port];
      if (mapped === undefined) return { host: "127.0.0.1", port };
      return typeof mapped === "number" ? { host: "127.0.0.1", port: mapped } : mapped;
    });

  // ---- authentication and authorization --------------------------------------------------------

  const authenticate = (request: IncomingMessage): Identity | undefined => {
    // As the API server's union authenticator: a verified client certificate, then a bearer token.
    if (acceptClientCertificates) {
      const tlsSocket = request.socket as TLSSocket;
      if (tlsSocket.authorized) {
        const subject = tlsSocket.getPeerCertificate().subject;
        const asList = (value: string | string[] | undefined) =>
          value === undefined ? [] : Array.isArray(value) ? value : [value];
        const [commonName] = asList(subject?.CN);
        if (commonName) return { user: commonName, groups: [...asList(subject?.O), "system:authenticated"] };
      }
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? "");
    return match ? tokens.get(match[1] as string) : undefined;
  };

  const forbidden = (identity: Identity, info: RequestInfo, verb: string, path: string): KubeStatus => {
    if (!info.resourceRequest) {
      return failureStatus(
        403,
        "Forbidden",
        `forbidden: User "${identity.user}" cannot ${verb} path "${path}"`,
        {},
      );
    }
    const resource = info.subresource ? `${info.resource}/${info.subresource}` : info.resource;
    const scope = info.namespace ? `in the namespace "${info.namespace}"` : "at the cluster scope";
    const reason = `User "${identity.user}" cannot ${verb} resource "${resource}" in API group "" ${scope}`;
    const subject = info.name ? `${info.resource} "${info.name}"` : `${info.resource}`;
    const details: KubeStatus["details"] = info.name
      ? { name: info.name, kind: info.resource }
      : { kind: info.resource };
    return failureStatus(403, "Forbidden", `${subject} is forbidden: ${reason}`, details);
  };

  /** Authenticates, authorizes and records a request; returns a refusal, or undefined to go on. */
  const admit = (
    request: IncomingMessage,
    url: URL,
    info: RequestInfo,
    record: RecordedRequest,
    upgrade: RecordedRequest["upgrade"],
  ): Reply | undefined => {
    const identity = authenticate(request);
    if (!identity) return { status: 401, body: unauthorizedStatus() };
    record.user = identity.user;
    const verbs = [info.verb];
    const streaming =
      info.resource === "pods" && (info.subresource === "exec" || info.subresource === "portforward");
    if (upgrade === "websocket" && streaming && websocketUpgradeNeedsCreate && info.verb !== "create") {
      verbs.push("create");
    }
    for (const verb of verbs) {
      record.authorizedVerbs.push(verb);
      const allowed =
        options.authorize?.({
          user: identity.user,
          groups: identity.groups,
          verb,
          resourceRequest: info.resourceRequest,
          path: url.pathname,
          namespace: info.namespace,
          resource: info.resource,
          subresource: info.subresource,
          name: info.name,
        }) ?? true;
      if (!allowed) return { status: 403, body: forbidden(identity, info, verb, url.pathname) };
    }
    return undefined;
  };

  // ---- plain requests ---------------------------------------------------------------------------

  const serverUrl = () => {
    const { port } = server.address() as AddressInfo;
    return `${useTls ? "https" : "http"}://127.0.0.1:${port}`;
  };

  const resolvePlain = (request: IncomingMessage, url: URL, info: RequestInfo): Reply => {
    const method = request.method ?? "GET";
    if (!info.resourceRequest) {
      if (method !== "GET") return { status: 405, body: methodNotAllowedStatus() };
      switch (url.pathname.replace(/\/+$/, "")) {
        case "/version":
          return { status: 200, body: versionInfo(options.serverVersion ?? "v1.32.4") };
        case "/api":
          return { status: 200, body: apiVersions(new URL(serverUrl()).host) };
        case "/apis":
          return { status: 200, body: apiGroupList() };
        case "/api/v1":
          return { status: 200, body: coreV1ResourceList() };
        default:
          return { status: 404, body: pathNotFoundStatus() };
      }
    }
    if (info.resource === "pods" && (info.subresource === "exec" || info.subresource === "portforward")) {
      return { status: 400, body: badRequestStatus("Upgrade request required") };
    }
    const served = ["pods", "secrets", "namespaces", "events"];
    if (!served.includes(info.resource ?? "") || info.subresource !== undefined) {
      return { status: 404, body: pathNotFoundStatus() };
    }
    if (method !== "GET") return { status: 405, body: methodNotAllowedStatus() };
    if (info.verb === "watch") {
      return { status: 400, body: badRequestStatus("the stand-in API server does not serve watches") };
    }
    if (info.resource === "namespaces") {
      const names = new Set([
        "default",
        "kube-node-lease",
        "kube-public",
        "kube-system",
        ...(options.namespaces ?? []),
      ]);
      for (const pod of pods.values()) names.add(pod.namespace);
      for (const secret of secrets.values()) names.add(secret.namespace);
      if (info.name !== undefined) {
        return names.has(info.name)
          ? { status: 200, body: renderNamespace(info.name, startedAt) }
          : { status: 404, body: notFoundStatus("namespaces", info.name) };
      }
      return {
        status: 200,
        body: {
          kind: "NamespaceList",
          apiVersion: "v1",
          metadata: { resourceVersion: String(resourceVersion) },
          items: [...names].sort().map((name) => renderNamespace(name, startedAt, false)),
        },
      };
    }
    const wantsTable = (request.headers.accept ?? "")
      .split(",")
      .some((part) => /;\s*as=Table/.test(part) && /;\s*g=meta\.k8s\.io/.test(part));

    if (info.resource === "events") {
      if (info.name !== undefined) {
        const event = events.find(
          (candidate) => candidate.namespace === info.namespace && candidate.name === info.name,
        );
        return event
          ? { status: 200, body: renderEvent(event) }
          : { status: 404, body: notFoundStatus("events", info.name) };
      }
      const fields = parseFieldSelector(url.searchParams.get("fieldSelector") ?? "", eventSelectableFields);
      return {
        status: 200,
        body: {
          kind: "EventList",
          apiVersion: "v1",
          metadata: { resourceVersion: String(resourceVersion) },
          items: events
            .filter(
              (event) =>
                (info.namespace === undefined || event.namespace === info.namespace) &&
                fields(selectableEventFields(event)),
            )
            .map((event) => renderEvent(event, false)),
        },
      };
    }

    if (info.resource === "secrets") {
      if (info.name !== undefined) {
        const secret = secrets.get(`${info.namespace}/${info.name}`);
        return secret
          ? { status: 200, body: renderSecret(secret) }
          : { status: 404, body: notFoundStatus("secrets", info.name) };
      }
      const labels = parseLabelSelector(url.searchParams.get("labelSelector") ?? "");
      const fields = parseFieldSelector(url.searchParams.get("fieldSelector") ?? "", secretSelectableFields);
      const items = [...secrets.values()].filter(
        (secret) =>
          (info.namespace === undefined || secret.namespace === info.namespace) &&
          labels(secret.spec.labels ?? {}) &&
          fields({
            "metadata.name": secret.spec.name,
            "metadata.namespace": secret.namespace,
            type: secret.spec.type ?? "Opaque",
          }),
      );
      return {
        status: 200,
        body: {
          kind: "SecretList",
          apiVersion: "v1",
          metadata: { resourceVersion: String(resourceVersion) },
          items: items.map((secret) => renderSecret(secret, false)),
        },
      };
    }

    if (info.name !== undefined) {
      const pod = pods.get(`${info.namespace}/${info.name}`);
      if (!pod) return { status: 404, body: notFoundStatus("pods", info.name) };
      return {
        status: 200,
        body: wantsTable ? renderPodTable([pod], pod.resourceVersion, new Date()) : renderPod(pod),
      };
    }
    const labels = parseLabelSelector(url.searchParams.get("labelSelector") ?? "");
    const fields = parseFieldSelector(url.searchParams.get("fieldSelector") ?? "", podSelectableFields);
    const items = [...pods.values()]
      .filter(
        (pod) =>
          (info.namespace === undefined || pod.namespace === info.namespace) &&
          labels(pod.spec.labels ?? {}) &&
          fields(selectablePodFields(pod)),
      )
      .sort((a, b) => `${a.namespace}/${a.spec.name}`.localeCompare(`${b.namespace}/${b.spec.name}`));
    const version = String(resourceVersion);
    return {
      status: 200,
      body: wantsTable ? renderPodTable(items, version, new Date()) : renderPodList(items, version),
    };
  };

  const handleRequest = (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://stand-in");
    const info = requestInfo(request.method ?? "GET", url);
    const record = newRecord(request, url, info);
    const send = (reply: Reply) => {
      record.status = reply.status;
      const body = JSON.stringify(reply.body);
      response.writeHead(reply.status, {
        "Content-Type": "application/json",
        "Content-Length": Buffer.byteLength(body),
        "Cache-Control": "no-cache, private",
      });
      response.end(body);
    };
    const failed = (error: unknown): Reply =>
      error instanceof SelectorError
        ? { status: 400, body: badRequestStatus(error.message) }
        : {
            status: 500,
            body: failureStatus(500, "InternalError", `Internal error occurred: ${String(error)}`),
          };
    let refusal: Reply | undefined;
    try {
      refusal = admit(request, url, info, record, undefined);
    } catch (error) {
      return send(failed(error));
    }
    if (refusal) return send(refusal);
    const method = request.method ?? "GET";
    const writable =
      info.resourceRequest &&
      (info.resource === "pods" || info.resource === "secrets") &&
      info.subresource === undefined;
    if (writable && (method === "POST" || method === "DELETE")) {
      text(request).then(
        (body) => send(resolveWrite(method, info, body)),
        (error: unknown) => send(failed(error)),
      );
      return;
    }
    try {
      send(resolvePlain(request, url, info));
    } catch (error) {
      send(failed(error));
    }
  };

  /** POST (create) and DELETE (by name) of pods and secrets, answered as kube-apiserver answers them. */
  const resolveWrite = (method: string, info: RequestInfo, text: string): Reply => {
    const resource = info.resource as "pods" | "secrets";
    const namespace = info.namespace;
    if (namespace === undefined) return { status: 405, body: methodNotAllowedStatus() };
    const key = (name: string) => `${namespace}/${name}`;
    if (method === "DELETE") {
      if (info.name === undefined) return { status: 405, body: methodNotAllowedStatus() };
      if (resource === "pods") {
        const pod = pods.get(key(info.name));
        if (!pod) return { status: 404, body: notFoundStatus("pods", info.name) };
        const rendered = renderPod(pod);
        removePod(info.name, { namespace });
        return { status: 200, body: rendered };
      }
      const secret = secrets.get(key(info.name));
      if (!secret) return { status: 404, body: notFoundStatus("secrets", info.name) };
      secrets.delete(key(info.name));
      resourceVersion++;
      return {
        status: 200,
        body: {
          kind: "Status",
          apiVersion: "v1",
          metadata: {},
          status: "Success",
          details: { name: info.name, kind: "secrets", uid: secret.uid },
        },
      };
    }
    if (info.name !== undefined) return { status: 405, body: methodNotAllowedStatus() };
    let object: Record<string, unknown>;
    try {
      object = JSON.parse(text) as Record<string, unknown>;
    } catch (error) {
      return { status: 400, body: badRequestStatus(`the body is not JSON: ${String(error)}`) };
    }
    const kind = resource === "pods" ? "Pod" : "Secret";
    if (object.kind !== undefined && object.kind !== kind) {
      return { status: 400, body: badRequestStatus(`the body is a ${String(object.kind)}, not a ${kind}`) };
    }
    const metadata = (object.metadata ?? {}) as {
      name?: string;
      namespace?: string;
      labels?: Record<string, string>;
      annotations?: Record<string, string>;
    };
    const name = metadata.name;
    const invalid = (message: string, field: string) =>
      failureStatus(422, "Invalid", `${kind} "${name ?? ""}" is invalid: ${field}: ${message}`, {
        name,
        kind: resource,
        causes: [{ reason: "FieldValueRequired", message, field }],
      });
    if (!name)
      return {
        status: 422,
        body: invalid("Required value: name or generateName is required", "metadata.name"),
      };
    if (metadata.namespace !== undefined && metadata.namespace !== namespace) {
      return {
        status: 400,
        body: badRequestStatus(
          "the namespace of the provided object does not match the namespace sent on the request",
        ),
      };
    }
    if ((resource === "pods" ? pods : secrets).has(key(name))) {
      return {
        status: 409,
        body: failureStatus(409, "AlreadyExists", `${resource} "${name}" already exists`, {
          name,
          kind: resource,
        }),
      };
    }
    created.push({ resource, namespace, name, object });
    if (resource === "secrets") {
      const data: Record<string, string | Buffer> = {};
      for (const [field, value] of Object.entries((object.data ?? {}) as Record<string, string>)) {
        data[field] = Buffer.from(value, "base64");
      }
      Object.assign(data, (object.stringData ?? {}) as Record<string, string>);
      const stored: StoredSecret = {
        spec: {
          name,
          namespace,
          ...(typeof object.type === "string" ? { type: object.type } : {}),
          ...(metadata.labels ? { labels: metadata.labels } : {}),
          data,
        },
        namespace,
        uid: deriveUid(`secret/${namespace}/${name}/${Date.now()}`),
        resourceVersion: nextResourceVersion(),
        createdAt: new Date(),
      };
      secrets.set(key(name), stored);
      return { status: 201, body: renderSecret(stored) };
    }
    const spec = (object.spec ?? {}) as {
      nodeName?: string;
      hostNetwork?: boolean;
      containers?: Array<{ name: string; image?: string; command?: string[]; args?: string[] }>;
    };
    if (!spec.containers?.length) {
      return { status: 422, body: invalid("Required value", "spec.containers") };
    }
    // Not run: a created pod stays Pending on its node, and its spec is served as it was posted.
    setPod({
      name,
      namespace,
      ...(metadata.labels ? { labels: metadata.labels } : {}),
      ...(metadata.annotations ? { annotations: metadata.annotations } : {}),
      containers: spec.containers.map((container) => ({
        name: container.name,
        ...(container.image ? { image: container.image } : {}),
        ...(container.command ? { command: container.command } : {}),
        ...(container.args ? { args: container.args } : {}),
      })),
      nodeName: spec.nodeName ?? "",
      phase: "Pending",
      ...(spec.hostNetwork ? { hostNetwork: true } : {}),
      overrides: { spec: spec as Record<string, unknown> },
    });
    const reply = { status: 201, body: renderPod(pods.get(key(name)) as StoredPod) };
    if (runnerOptions && spec.nodeName) runPod(namespace, name, spec as PostedPodSpec);
    return reply;
  };

  // ---- upgrades: exec and port-forward ----------------------------------------------------------

  const handleUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => {});
    const url = new URL(request.url ?? "/", "http://stand-in");
    const info = requestInfo(request.method ?? "GET", url);
    const record = newRecord(request, url, info);
    const upgradeHeader = (request.headers.upgrade ?? "").toLowerCase();
    const upgrade =
      upgradeHeader === "websocket" ? "websocket" : upgradeHeader.startsWith("spdy/") ? "spdy" : undefined;
    record.upgrade = upgrade;
    const refuse = (reply: Reply) => {
      record.status = reply.status;
      writeRawResponse(socket, reply);
    };
    try {
      const refusal = admit(request, url, info, record, upgrade);
      if (refusal) return refuse(refusal);
      const streaming =
        info.resource === "pods" && (info.subresource === "exec" || info.subresource === "portforward");
      if (!streaming || info.name === undefined || info.namespace === undefined) {
        return refuse(resolvePlain(request, url, info));
      }
      const pod = pods.get(`${info.namespace}/${info.name}`);
      if (!pod) return refuse({ status: 404, body: notFoundStatus("pods", info.name) });

      if (info.subresource === "exec") {
        const prepared = prepareExec(pod, url);
        if ("status" in prepared) return refuse(prepared);
        if (upgrade !== "websocket") return refuse(spdyRefusal());
        const protocol = selectProtocol(request, servedExecProtocols, "v5.channel.k8s.io");
        if (protocol === undefined) return refuse({ status: 403, body: undefined });
        selectedProtocols.set(request, protocol);
        upgrader.handleUpgrade(request, socket, head, (connection) => {
          record.status = 101;
          record.protocol = connection.protocol;
          connection.on("ping", () => {
            record.pings = (record.pings ?? 0) + 1;
          });
          const session = new ExecSession(connection, protocol, prepared, highWaterMark);
          streams.push(session.record);
          sessions.add(session);
          void session.ended.then(() => sessions.delete(session));
          session.start(execHandler);
        });
        return;
      }

      if (podNodeName(pod) === "") {
        return refuse({
          status: 400,
          body: badRequestStatus(`pod ${pod.spec.name} does not have a host assigned`),
        });
      }
      if (upgrade !== "websocket" || offeredProtocols(request).includes(portForwardTunnelProtocol)) {
        return refuse(spdyRefusal());
      }
      // The kubelet reads the ports of a WebSocket port-forward from the query.
      const ports = parsePorts(url);
      if (!Array.isArray(ports)) return refuse(ports);
      const protocol = selectProtocol(request, portForwardProtocols, undefined);
      if (protocol === undefined) return refuse({ status: 403, body: undefined });
      selectedProtocols.set(request, protocol);
      upgrader.handleUpgrade(request, socket, head, (connection) => {
        record.status = 101;
        record.protocol = connection.protocol;
        connection.on("ping", () => {
          record.pings = (record.pings ?? 0) + 1;
        });
        const scope = { namespace: pod.namespace, pod: pod.spec.name, sandboxId: pod.sandboxId };
        const session = new PortForwardSession(
          connection,
          protocol as PortForwardProtocol,
          scope,
          ports,
          highWaterMark,
        );
        streams.push(session.record);
        sessions.add(session);
        void session.ended.then(() => sessions.delete(session));
        session.start((port) => portForwardTarget(pod.spec, port));
      });
    } catch (error) {
      refuse(
        error instanceof SelectorError
          ? { status: 400, body: badRequestStatus(error.message) }
          : {
              status: 500,
              body: failureStatus(500, "InternalError", `Internal error occurred: ${String(error)}`),
            },
      );
    }
  };

  /** Validates an exec request as ExecREST.Connect and the kubelet do, before any upgrade. */
  const prepareExec = (pod: StoredPod, url: URL): ExecRequest | Reply => {
    const query = url.searchParams;
    const names = containerNames(pod);
    let containerName = query.get("container") ?? "";
    if (containerName === "") {
      if (names.length === 1) containerName = names[0] as string;
      else if (names.length === 0) {
        return {
          status: 400,
          body: badRequestStatus(`a container name must be specified for pod ${pod.spec.name}`),
        };
      } else {
        const message = `a container name must be specified for pod ${pod.spec.name}, choose one of: [${names.join(" ")}]`;
        return { status: 400, body: badRequestStatus(message) };
      }
    }
    const container = pod.spec.containers.find((candidate) => candidate.name === containerName);
    if (!container) {
      return {
        status: 400,
        body: badRequestStatus(`container ${containerName} is not valid for pod ${pod.spec.name}`),
      };
    }
    if (podNodeName(pod) === "") {
      return { status: 400, body: badRequestStatus(`pod ${pod.spec.name} does not have a host assigned`) };
    }
    const tty = queryFlag(query, "tty");
    const stdin = queryFlag(query, "stdin");
    const stdout = queryFlag(query, "stdout");
    // The kubelet drops stderr for a tty ("exec with tty and stderr is not supported").
    const stderr = queryFlag(query, "stderr") && !tty;
    if (!stdin && !stdout && !stderr) {
      return { status: 400, body: badRequestStatus("you must specify at least 1 of stdin, stdout, stderr") };
    }
    return {
      pod: pod.spec,
      namespace: pod.namespace,
      container,
      command: query.getAll("command"),
      stdin,
      stdout,
      stderr,
      tty,
    };
  };

  // ---- server -----------------------------------------------------------------------------------

  const server: Server = certificates
    ? createHttpsServer({
        key: await readFile(certificates.serverKeyFile),
        cert: await readFile(certificates.serverCertFile),
        ca: await readFile(certificates.caFile),
        requestCert: acceptClientCertificates,
        rejectUnauthorized: false,
      })
    : createHttpServer();
  server.on("request", handleRequest);
  server.on("upgrade", handleUpgrade);
  server.on(certificates ? "secureConnection" : "connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("tlsClientError", () => {});
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const url = serverUrl();

  const token =
    configuredTokens[0] === undefined
      ? undefined
      : typeof configuredTokens[0] === "string"
        ? configuredTokens[0]
        : configuredTokens[0].token;
  let kubeconfigCount = 0;
  const writeConfig = (credentials: KubeconfigCredentials & { clientCertificate?: boolean }) => {
    const files =
      credentials.clientCertificate && certificates
        ? { clientCertificateFile: certificates.clientCertFile, clientKeyFile: certificates.clientKeyFile }
        : {};
    return writeKubeconfig(
      join(temp.path, `kubeconfig-${kubeconfigCount++}.yaml`),
      { server: url, caFile: certificates?.caFile, namespace: options.kubeconfigNamespace },
      { ...credentials, ...files },
    );
  };
  const kubeconfigPath = await writeConfig(token !== undefined ? { token } : { clientCertificate: true });

  return {
    url,
    caFile: certificates?.caFile,
    caData: certificates ? await readFile(certificates.caFile, "utf8") : undefined,
    clientCertificateFile: certificates?.clientCertFile,
    clientKeyFile: certificates?.clientKeyFile,
    token,
    kubeconfigPath,
    writeKubeconfig: writeConfig,
    requests,
    streams,
    setPod,
    deletePod: removePod,
    created,
    podRuns,
    async stop() {
      for (const run of podRuns.values()) stoppingRuns.push(run.stop());
      await Promise.all(stoppingRuns);
      for (const session of sessions) {
        if (session instanceof ExecSession) session.killProcess();
        session.drop();
      }
      for (const socket of sockets) socket.destroy();
      upgrader.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await temp.remove();
    },
  };

  function newRecord(request: IncomingMessage, url: URL, info: RequestInfo): RecordedRequest {
    const query: Record<string, string[]> = {};
    for (const key of new Set(url.searchParams.keys())) query[key] = url.searchParams.getAll(key);
    const record: RecordedRequest = {
      method: request.method ?? "GET",
      path: url.pathname,
      query,
      verb: info.verb,
      namespace: info.namespace,
      resource: info.resource,
      subresource: info.subresource,
      name: info.name,
      authorizedVerbs: [],
      status: 0,
    };
    requests.push(record);
    return record;
  }
}

/** The default exec handler: the command as a local process, in its own process group. */
function spawnLocally(request: ExecRequest): ChildProcess {
  const [executable, ...args] = request.command;
  if (executable === undefined || executable === "") {
    throw Object.assign(new Error("exec: no command"), { code: "ENOENT" });
  }
  return spawn(executable, args, {
    env: { ...process.env, ...request.container.env },
    stdio: [
      request.stdin ? "pipe" : "ignore",
      request.stdout ? "pipe" : "ignore",
      request.stderr ? "pipe" : "ignore",
    ],
    detached: true,
  });
}

/** apiserver RequestInfoFactory: the verb, namespace, resource, subresource and name of a path. */
function requestInfo(method: string, url: URL): RequestInfo {
  const lowerMethod = method.toLowerCase();
  const segments = url.pathname.split("/").filter((segment) => segment !== "");
  if (segments[0] !== "api" || segments.length < 3) return { resourceRequest: false, verb: lowerMethod };
  let rest = segments.slice(2);
  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [resource, name, subresource] = rest;
  const info: RequestInfo = {
    resourceRequest: true,
    verb: lowerMethod,
    namespace,
    resource,
    name,
    subresource,
  };
  if (resource === "namespaces" && name !== undefined) info.namespace = name;
  switch (method) {
    case "GET":
    case "HEAD":
      info.verb = name !== undefined ? "get" : isTrue(url.searchParams.get("watch")) ? "watch" : "list";
      break;
    case "POST":
      info.verb = "create";
      break;
    case "PUT":
      info.verb = "update";
      break;
    case "PATCH":
      info.verb = "patch";
      break;
    case "DELETE":
      info.verb = name !== undefined ? "delete" : "deletecollection";
      break;
  }
  return info;
}

function isTrue(value: string | null): boolean {
  return value !== null && ["1", "t", "true"].includes(value.toLowerCase());
}

/** runtime.Convert_Slice_string_To_bool: present and not "0", "false" or "no" means true. */
function queryFlag(query: URLSearchParams, name: string): boolean {
  const value = query.get(name);
  if (value === null) return false;
  return !["0", "false", "no"].includes(value.toLowerCase());
}

function selectablePodFields(pod: StoredPod): Record<string, string> {
  return {
    "metadata.name": pod.spec.name,
    "metadata.namespace": pod.namespace,
    "spec.nodeName": podNodeName(pod),
    "spec.restartPolicy": "Always",
    "spec.schedulerName": "default-scheduler",
    "spec.serviceAccountName": "",
    "spec.hostNetwork": String(pod.spec.hostNetwork ?? false),
    "status.phase": podPhase(pod),
    "status.podIP": podPhase(pod) === "Running" ? podIP(pod) : "",
    "status.nominatedNodeName": "",
  };
}

/**
 * The subprotocol a real server would pick: a request offering v5 goes to the translator (which speaks
 * only v5); otherwise the kubelet takes the first offered protocol it supports ("" when none offered).
 */
function selectProtocol<P extends string>(
  request: IncomingMessage,
  supported: readonly P[],
  translatorProtocol: P | undefined,
): P | undefined {
  const offered = offeredProtocols(request);
  if (
    translatorProtocol !== undefined &&
    offered.includes(translatorProtocol) &&
    supported.includes(translatorProtocol)
  ) {
    return translatorProtocol;
  }
  for (const protocol of offered.length === 0 ? [""] : offered) {
    if (protocol !== translatorProtocol && (supported as readonly string[]).includes(protocol))
      return protocol as P;
  }
  return undefined;
}

function offeredProtocols(request: IncomingMessage): string[] {
  return (request.headers["sec-websocket-protocol"] ?? "")
    .split(",")
    .map((protocol) => protocol.trim())
    .filter((protocol) => protocol !== "");
}

function parsePorts(url: URL): number[] | Reply {
  const values = url.searchParams.getAll("ports");
  if (values.length === 0)
    return { status: 400, body: badRequestStatus('query parameter "port" is required') };
  const ports: number[] = [];
  for (const value of values) {
    if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 65535) {
      return { status: 400, body: badRequestStatus(`unable to parse "${value}" as a port`) };
    }
    ports.push(Number(value));
  }
  return ports;
}

/** kubectl ≥ 1.31 port-forwards by tunnelling SPDY through a WebSocket (PortForwardWebsockets). */
const portForwardTunnelProtocol = "SPDY/3.1+portforward.k8s.io";

function spdyRefusal(): Reply {
  const message =
    "the stand-in API server speaks only the WebSocket channel protocols (exec: v5/v4 channel.k8s.io, " +
    "port-forward: v4.channel.k8s.io), neither SPDY nor SPDY tunnelled through a WebSocket";
  return { status: 400, body: badRequestStatus(message) };
}

const reasonPhrases: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  500: "Internal Server Error",
};

function writeRawResponse(socket: Duplex, reply: Reply): void {
  const body = reply.body === undefined ? "" : JSON.stringify(reply.body);
  const headers = [
    `HTTP/1.1 ${reply.status} ${reasonPhrases[reply.status] ?? "Error"}`,
    ...(body === "" ? [] : ["Content-Type: application/json"]),
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
  ];
  socket.end(`${headers.join("\r\n")}\r\n\r\n${body}`);
}
