// The JSON the stand-in serves: pods, secrets, discovery documents, tables and metav1.Status bodies,
// shaped and worded as kube-apiserver 1.32 shapes and words them (field order follows the Go structs).
import { createHash } from "node:crypto";

export type PodPhase = "Pending" | "Running" | "Succeeded" | "Failed" | "Unknown";

export interface StandInContainer {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  /** Set in the container spec and in the environment of every command executed in it. */
  env?: Record<string, string>;
  ports?: number[];
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  /** Defaults to the pod's readiness. */
  ready?: boolean;
  restartCount?: number;
  /** The exit code of a container that ended (pod phase Succeeded or Failed). */
  exitCode?: number;
  /** Why a container of a Pending pod waits (default ContainerCreating), and the kubelet's message. */
  waitingReason?: string;
  waitingMessage?: string;
}

export interface StandInPod {
  name: string;
  /** Defaults to "default". */
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  containers: StandInContainer[];
  /** Defaults to "stand-in-node"; an empty string leaves the pod unscheduled. */
  nodeName?: string;
  /** Defaults to "Running". */
  phase?: PodPhase;
  /** Defaults to true for a running pod. */
  ready?: boolean;
  hostNetwork?: boolean;
  podIP?: string;
  volumes?: Array<{ name: string; hostPath?: string; emptyDir?: boolean; secretName?: string }>;
  /**
   * Where a port-forward to a pod port connects: a local port on 127.0.0.1 or a host and port.
   * Ports not listed connect to 127.0.0.1 on the same port number.
   */
  portMap?: Record<number, number | { host: string; port: number }>;
  /** Shallow overrides of the served object's metadata, spec and status. */
  overrides?: {
    metadata?: Record<string, unknown>;
    spec?: Record<string, unknown>;
    status?: Record<string, unknown>;
  };
}

export interface StandInSecret {
  name: string;
  namespace?: string;
  type?: string;
  labels?: Record<string, string>;
  data: Record<string, string | Buffer>;
}

/** A pod as the stand-in stores it: the options with every default filled in. */
export interface StoredPod {
  spec: StandInPod;
  namespace: string;
  uid: string;
  /** A stable 64-hex-digit id, standing in for the CRI sandbox id in error messages. */
  sandboxId: string;
  resourceVersion: string;
  createdAt: Date;
}

export interface StoredSecret {
  spec: StandInSecret;
  namespace: string;
  uid: string;
  resourceVersion: string;
  createdAt: Date;
}

// ---- metav1.Status ------------------------------------------------------------------------------

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

export interface KubeStatus {
  kind?: "Status";
  apiVersion?: "v1";
  metadata: Record<string, never>;
  status: "Success" | "Failure";
  message?: string;
  reason?: string;
  details?: { name?: string; group?: string; kind?: string; causes?: StatusCause[] };
  code?: number;
}

/** A Status as the API server answers a failed request (with kind and apiVersion). */
export function failureStatus(
  code: number,
  reason: string,
  message: string,
  details?: KubeStatus["details"],
): KubeStatus {
  const status: KubeStatus = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
  };
  if (details) status.details = details;
  status.code = code;
  return status;
}

export const unauthorizedStatus = () => failureStatus(401, "Unauthorized", "Unauthorized");

export const badRequestStatus = (message: string) => failureStatus(400, "BadRequest", message);

export const notFoundStatus = (resource: string, name: string) =>
  failureStatus(404, "NotFound", `${resource} "${name}" not found`, { name, kind: resource });

export const pathNotFoundStatus = () =>
  failureStatus(404, "NotFound", "the server could not find the requested resource", {});

export const methodNotAllowedStatus = () =>
  failureStatus(
    405,
    "MethodNotAllowed",
    "the server does not allow this method on the requested resource",
    {},
  );

/** The exec status written on channel 3 (no kind or apiVersion: it is `StatusError.Status()`). */
export function execStatus(
  fields: Omit<KubeStatus, "metadata" | "kind" | "apiVersion"> & { status: KubeStatus["status"] },
): KubeStatus {
  return { metadata: {}, ...fields };
}

/** `apierrors.NewInternalError(err)`. */
export function internalErrorStatus(errorMessage: string): KubeStatus {
  return execStatus({
    status: "Failure",
    message: `Internal error occurred: ${errorMessage}`,
    reason: "InternalError",
    details: { causes: [{ message: errorMessage }] },
    code: 500,
  });
}

// ---- pods ---------------------------------------------------------------------------------------

/** A UUID-shaped id derived from a seed, so that objects keep their uid across restarts of a test. */
export function deriveUid(seed: string): string {
  const digest = createHash("sha256").update(seed).digest("hex");
  return `${digest.slice(0, 8)}-${digest.slice(8, 12)}-4${digest.slice(13, 16)}-a${digest.slice(17, 20)}-${digest.slice(20, 32)}`;
}

export function storePod(spec: StandInPod, createdAt: Date, resourceVersion: string): StoredPod {
  const namespace = spec.namespace ?? "default";
  const seed = `pod/${namespace}/${spec.name}/${createdAt.toISOString()}`;
  const sandboxId = createHash("sha256").update(seed).digest("hex");
  return { spec, namespace, uid: deriveUid(seed), sandboxId, resourceVersion, createdAt };
}

export function podPhase(pod: StoredPod): PodPhase {
  return pod.spec.phase ?? "Running";
}

export function podNodeName(pod: StoredPod): string {
  return pod.spec.nodeName ?? "stand-in-node";
}

export function podIP(pod: StoredPod): string {
  if (pod.spec.podIP) return pod.spec.podIP;
  if (pod.spec.hostNetwork) return "127.0.0.1";
  return `10.244.0.${(Number.parseInt(pod.sandboxId.slice(0, 2), 16) % 250) + 2}`;
}

function containerReady(pod: StoredPod, container: StandInContainer): boolean {
  if (podPhase(pod) !== "Running") return false;
  return container.ready ?? pod.spec.ready ?? true;
}

/** A container's state as the kubelet reports it for the pod's phase. */
function containerState(phase: PodPhase, container: StandInContainer, created: string) {
  if (phase === "Running") return { running: { startedAt: created } };
  if (phase === "Succeeded" || phase === "Failed") {
    const exitCode = container.exitCode ?? (phase === "Succeeded" ? 0 : 1);
    return { terminated: { exitCode, reason: exitCode === 0 ? "Completed" : "Error", startedAt: created } };
  }
  return {
    waiting: {
      reason: container.waitingReason ?? "ContainerCreating",
      ...(container.waitingMessage ? { message: container.waitingMessage } : {}),
    },
  };
}

/** Every container name, in the order the API server visits them (init, regular, ephemeral). */
export function containerNames(pod: StoredPod): string[] {
  return pod.spec.containers.map((container) => container.name);
}

/** The Pod object (v1). `withTypeMeta` is false for list items, which the API server sends bare. */
export function renderPod(pod: StoredPod, withTypeMeta = true): Record<string, unknown> {
  const { spec } = pod;
  const created = pod.createdAt.toISOString().replace(/\.\d{3}Z$/, "Z");
  const phase = podPhase(pod);
  const nodeName = podNodeName(pod);
  const allReady = spec.containers.every((container) => containerReady(pod, container));
  const metadata: Record<string, unknown> = {
    name: spec.name,
    namespace: pod.namespace,
    uid: pod.uid,
    resourceVersion: pod.resourceVersion,
    creationTimestamp: created,
  };
  if (spec.labels && Object.keys(spec.labels).length > 0) metadata.labels = { ...spec.labels };
  if (spec.annotations && Object.keys(spec.annotations).length > 0)
    metadata.annotations = { ...spec.annotations };
  Object.assign(metadata, spec.overrides?.metadata);

  const podSpec: Record<string, unknown> = {
    volumes: spec.volumes?.map((volume) => {
      if (volume.hostPath !== undefined)
        return { name: volume.name, hostPath: { path: volume.hostPath, type: "" } };
      if (volume.secretName !== undefined) {
        return { name: volume.name, secret: { secretName: volume.secretName, defaultMode: 420 } };
      }
      return { name: volume.name, emptyDir: {} };
    }),
    containers: spec.containers.map((container) => {
      const rendered: Record<string, unknown> = {
        name: container.name,
        image: container.image ?? "stand-in:latest",
      };
      if (container.command) rendered.command = [...container.command];
      if (container.args) rendered.args = [...container.args];
      if (container.ports) {
        rendered.ports = container.ports.map((port) => ({ containerPort: port, protocol: "TCP" }));
      }
      if (container.env)
        rendered.env = Object.entries(container.env).map(([name, value]) => ({ name, value }));
      rendered.resources = {};
      if (container.volumeMounts)
        rendered.volumeMounts = container.volumeMounts.map((mount) => ({ ...mount }));
      rendered.terminationMessagePath = "/dev/termination-log";
      rendered.terminationMessagePolicy = "File";
      rendered.imagePullPolicy = "IfNotPresent";
      return rendered;
    }),
    restartPolicy: "Always",
    terminationGracePeriodSeconds: 30,
    dnsPolicy: "ClusterFirst",
    nodeName: nodeName === "" ? undefined : nodeName,
    hostNetwork: spec.hostNetwork || undefined,
    securityContext: {},
    schedulerName: "default-scheduler",
    priority: 0,
    enableServiceLinks: true,
    preemptionPolicy: "PreemptLowerPriority",
  };
  Object.assign(podSpec, spec.overrides?.spec);

  const condition = (type: string, value: boolean) => ({
    type,
    status: value ? "True" : "False",
    lastProbeTime: null,
    lastTransitionTime: created,
  });
  const scheduled = nodeName !== "";
  const status: Record<string, unknown> = {
    phase,
    conditions: scheduled
      ? [
          condition("PodReadyToStartContainers", phase === "Running"),
          condition("Initialized", true),
          condition("Ready", allReady),
          condition("ContainersReady", allReady),
          condition("PodScheduled", true),
        ]
      : [condition("PodScheduled", false)],
  };
  if (scheduled) {
    status.hostIP = "127.0.0.1";
    status.hostIPs = [{ ip: "127.0.0.1" }];
    if (phase === "Running") {
      status.podIP = podIP(pod);
      status.podIPs = [{ ip: podIP(pod) }];
    }
    status.startTime = created;
    status.containerStatuses = spec.containers.map((container, index) => ({
      name: container.name,
      state: containerState(phase, container, created),
      lastState: {},
      ready: containerReady(pod, container),
      restartCount: container.restartCount ?? 0,
      image: container.image ?? "stand-in:latest",
      imageID: "",
      containerID: `containerd://${createHash("sha256").update(`${pod.sandboxId}/${index}`).digest("hex")}`,
      started: phase === "Running",
    }));
  }
  status.qosClass = "BestEffort";
  Object.assign(status, spec.overrides?.status);

  const object: Record<string, unknown> = withTypeMeta ? { kind: "Pod", apiVersion: "v1" } : {};
  object.metadata = metadata;
  object.spec = podSpec;
  object.status = status;
  return JSON.parse(JSON.stringify(object)) as Record<string, unknown>;
}

export function renderPodList(pods: StoredPod[], resourceVersion: string): Record<string, unknown> {
  return {
    kind: "PodList",
    apiVersion: "v1",
    metadata: { resourceVersion },
    items: pods.map((pod) => renderPod(pod, false)),
  };
}

/** The `kubectl get pods` table (meta.k8s.io/v1 Table), columns as the API server's pod printer. */
export function renderPodTable(
  pods: StoredPod[],
  resourceVersion: string,
  now: Date,
): Record<string, unknown> {
  const column = (name: string, description: string, priority = 0, format = "") => ({
    name,
    type: "string",
    format,
    description,
    priority,
  });
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: { resourceVersion },
    columnDefinitions: [
      column("Name", "Name must be unique within a namespace.", 0, "name"),
      column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
      column("Status", "The aggregate status of the containers in this pod."),
      column("Restarts", "The number of times the containers in this pod have been restarted."),
      column(
        "Age",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
      ),
      column("IP", "podIP address allocated to the pod.", 1),
      column("Node", "NodeName indicates in which node this pod is scheduled.", 1),
      column("Nominated Node", "nominatedNodeName is set when this pod preempts other pods on the node.", 1),
      column("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
    ],
    rows: pods.map((pod) => {
      const rendered = renderPod(pod, false);
      const ready = pod.spec.containers.filter((container) => containerReady(pod, container)).length;
      const restarts = pod.spec.containers.reduce((sum, container) => sum + (container.restartCount ?? 0), 0);
      const nodeName = podNodeName(pod);
      return {
        cells: [
          pod.spec.name,
          `${ready}/${pod.spec.containers.length}`,
          podPhase(pod) === "Running" || nodeName === "" ? podPhase(pod) : "ContainerCreating",
          String(restarts),
          humanDuration(now.getTime() - pod.createdAt.getTime()),
          podPhase(pod) === "Running" && nodeName !== "" ? podIP(pod) : "<none>",
          nodeName === "" ? "<none>" : nodeName,
          "<none>",
          "<none>",
        ],
        object: { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: rendered.metadata },
      };
    }),
  };
}

/** `duration.HumanDuration` for the ages shown here (seconds to days). */
function humanDuration(milliseconds: number): string {
  const seconds = Math.max(0, Math.floor(milliseconds / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h`;
  return `${Math.floor(hours / 24)}d`;
}

// ---- secrets ------------------------------------------------------------------------------------

export function renderSecret(secret: StoredSecret, withTypeMeta = true): Record<string, unknown> {
  const metadata: Record<string, unknown> = {
    name: secret.spec.name,
    namespace: secret.namespace,
    uid: secret.uid,
    resourceVersion: secret.resourceVersion,
    creationTimestamp: secret.createdAt.toISOString().replace(/\.\d{3}Z$/, "Z"),
  };
  if (secret.spec.labels && Object.keys(secret.spec.labels).length > 0)
    metadata.labels = { ...secret.spec.labels };
  const object: Record<string, unknown> = withTypeMeta ? { kind: "Secret", apiVersion: "v1" } : {};
  object.metadata = metadata;
  object.data = Object.fromEntries(
    Object.entries(secret.spec.data).map(([key, value]) => [key, Buffer.from(value).toString("base64")]),
  );
  object.type = secret.spec.type ?? "Opaque";
  return object;
}

// ---- events --------------------------------------------------------------------------------------

/** A core/v1 Event about a pod, as the kubelet records one (reason FailedMount, Failed, …). */
export interface StoredEvent {
  name: string;
  namespace: string;
  uid: string;
  resourceVersion: string;
  involvedObject: { kind: "Pod"; namespace: string; name: string; uid: string };
  reason: string;
  message: string;
  type: "Normal" | "Warning";
  count: number;
  firstTimestamp: Date;
  lastTimestamp: Date;
  /** The node whose kubelet reported it. */
  host: string;
}

export function renderEvent(event: StoredEvent, withTypeMeta = true): Record<string, unknown> {
  const time = (date: Date) => date.toISOString().replace(/\.\d{3}Z$/, "Z");
  const object: Record<string, unknown> = withTypeMeta ? { kind: "Event", apiVersion: "v1" } : {};
  object.metadata = {
    name: event.name,
    namespace: event.namespace,
    uid: event.uid,
    resourceVersion: event.resourceVersion,
    creationTimestamp: time(event.firstTimestamp),
  };
  object.involvedObject = { apiVersion: "v1", ...event.involvedObject };
  object.reason = event.reason;
  object.message = event.message;
  object.source = { component: "kubelet", host: event.host };
  object.firstTimestamp = time(event.firstTimestamp);
  object.lastTimestamp = time(event.lastTimestamp);
  object.count = event.count;
  object.type = event.type;
  object.eventTime = null;
  object.reportingComponent = "kubelet";
  object.reportingInstance = event.host;
  return object;
}

/** The fields an Event's field selector may name (pkg/apis/core/v1 conversion of Event). */
export function selectableEventFields(event: StoredEvent): Record<string, string> {
  return {
    "metadata.name": event.name,
    "metadata.namespace": event.namespace,
    "involvedObject.kind": event.involvedObject.kind,
    "involvedObject.namespace": event.involvedObject.namespace,
    "involvedObject.name": event.involvedObject.name,
    "involvedObject.uid": event.involvedObject.uid,
    "involvedObject.apiVersion": "v1",
    "involvedObject.resourceVersion": "",
    "involvedObject.fieldPath": "",
    reason: event.reason,
    reportingComponent: "kubelet",
    source: "kubelet",
    type: event.type,
  };
}

// ---- namespaces ---------------------------------------------------------------------------------

export function renderNamespace(name: string, createdAt: Date, withTypeMeta = true): Record<string, unknown> {
  const object: Record<string, unknown> = withTypeMeta ? { kind: "Namespace", apiVersion: "v1" } : {};
  object.metadata = {
    name,
    uid: deriveUid(`namespace/${name}`),
    resourceVersion: "1",
    creationTimestamp: createdAt.toISOString().replace(/\.\d{3}Z$/, "Z"),
    labels: { "kubernetes.io/metadata.name": name },
  };
  object.spec = { finalizers: ["kubernetes"] };
  object.status = { phase: "Active" };
  return object;
}

// ---- discovery ----------------------------------------------------------------------------------

export function versionInfo(gitVersion: string): Record<string, string> {
  const [major, minor] = gitVersion.replace(/^v/, "").split(".");
  return {
    major: major ?? "1",
    minor: minor ?? "0",
    gitVersion,
    gitCommit: "0000000000000000000000000000000000000000",
    gitTreeState: "clean",
    buildDate: "2025-04-22T16:03:24Z",
    goVersion: "go1.23.8",
    compiler: "gc",
    platform: "linux/amd64",
  };
}

export function apiVersions(serverAddress: string): Record<string, unknown> {
  return {
    kind: "APIVersions",
    versions: ["v1"],
    serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }],
  };
}

export function apiGroupList(): Record<string, unknown> {
  return { kind: "APIGroupList", apiVersion: "v1", groups: [] };
}

/** `/api/v1`: only the resources the stand-in serves, with the verbs the real server lists for them. */
export function coreV1ResourceList(): Record<string, unknown> {
  const all = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
  return {
    kind: "APIResourceList",
    groupVersion: "v1",
    resources: [
      {
        name: "namespaces",
        singularName: "namespace",
        namespaced: false,
        kind: "Namespace",
        verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
        shortNames: ["ns"],
        storageVersionHash: "Q3oi5N2YM8M=",
      },
      {
        name: "events",
        singularName: "event",
        namespaced: true,
        kind: "Event",
        verbs: all,
        shortNames: ["ev"],
        storageVersionHash: "r2yiGXH7wu8=",
      },
      {
        name: "pods",
        singularName: "pod",
        namespaced: true,
        kind: "Pod",
        verbs: all,
        shortNames: ["po"],
        categories: ["all"],
        storageVersionHash: "xPOwRZ+Yhw8=",
      },
      {
        name: "pods/exec",
        singularName: "",
        namespaced: true,
        kind: "PodExecOptions",
        verbs: ["create", "get"],
      },
      {
        name: "pods/portforward",
        singularName: "",
        namespaced: true,
        kind: "PodPortForwardOptions",
        verbs: ["create", "get"],
      },
      {
        name: "secrets",
        singularName: "secret",
        namespaced: true,
        kind: "Secret",
        verbs: all,
        storageVersionHash: "S6u1pOWzb84=",
      },
    ],
  };
}
