// Finds the etcd members of a cluster as pods (namespace + label selector), reads from each pod spec
// how that member serves clients (URLs, TLS files, data dir, name) — flags first, then the ETCD_*
// environment etcd also reads — and chooses the member to snapshot: a ready one, a follower rather
// than the leader when the caller knows which is which. Only listing touches the API; the rest is pure.
import type { KubeConfig, V1Container, V1EnvVar, V1Pod } from "@kubernetes/client-node";
import { EtcdUnavailableError, InvalidInputError } from "../errors.js";
import { listPods } from "./core-v1-api.js";
import { apiServerOf, kubernetesApiFailure } from "./kube-api-failure.js";
import type { MemberSelector } from "./member-presets.js";

export { bitnamiMembers, kubeadmMembers, type MemberSelector } from "./member-presets.js";

export interface EtcdMemberPod {
  namespace: string;
  podName: string;
  container: string;
  nodeName: string | undefined;
  podIP: string | undefined;
  hostNetwork: boolean;
  image: string | undefined;
  phase: string;
  /** Running, Ready, the etcd container ready, and not being deleted. */
  ready: boolean;
  /** Why the pod is not ready, when it is not. */
  notReady: string | undefined;
  /** etcd's --name (the member name in the cluster), when the pod spec says it. */
  memberName: string | undefined;
  advertiseClientUrls: string[];
  listenClientUrls: string[];
  /**
   * A client URL that works from inside the pod's network namespace — where `etcdctl` runs under exec
   * and where a port-forward lands: loopback when etcd listens there or on every address.
   */
  localClientUrl: string;
  /** Whether `localClientUrl` is on loopback (a port-forward reaches only loopback or wildcard listeners). */
  listensOnLoopback: boolean;
  clientPort: number;
  /** Paths inside the pod (--cert-file, --key-file, --trusted-ca-file). */
  tls: { certFile?: string | undefined; keyFile?: string | undefined; trustedCaFile?: string | undefined };
  clientCertAuth: boolean;
  dataDir: string | undefined;
  /** etcd was started with --config-file, whose settings the pod spec does not show. */
  configFile: string | undefined;
  /** The container's environment variable holding the root password (Bitnami's ETCD_ROOT_PASSWORD), if any. */
  rootPasswordEnv: string | undefined;
}

/** `namespace/name`: the key of a member in health maps and messages. */
export function memberKey(member: Pick<EtcdMemberPod, "namespace" | "podName">): string {
  return `${member.namespace}/${member.podName}`;
}

export class ContainerMissingError extends InvalidInputError {}

// ---- reading one pod spec ----------------------------------------------------------------------

/** Flags without a value (`--client-cert-auth`): the next token is not theirs. */
const booleanFlags = new Set([
  "client-cert-auth",
  "peer-client-cert-auth",
  "auto-tls",
  "peer-auto-tls",
  "enable-v2",
  "enable-pprof",
  "strict-reconfig-check",
  "force-new-cluster",
  "debug",
  "version",
]);

/** Reads an etcd member's settings from its pod, as the container would see them. */
export function parseEtcdMemberPod(pod: V1Pod, containerName: string): EtcdMemberPod {
  const namespace = pod.metadata?.namespace ?? "default";
  const podName = pod.metadata?.name ?? "(unnamed)";
  const container = pod.spec?.containers.find((candidate) => candidate.name === containerName);
  if (!container) {
    const names = (pod.spec?.containers ?? []).map((candidate) => candidate.name);
    throw new ContainerMissingError(
      `pod ${namespace}/${podName} has no container "${containerName}" (it has: ${names.join(", ") || "none"}): set etcd.container`,
    );
  }
  const env = containerEnvironment(pod, container);
  const flags = parseFlags(
    [...(container.command ?? []), ...(container.args ?? [])].map((part) => expandReferences(part, env)),
  );
  const setting = (flag: string): string | undefined =>
    flags.get(flag) ?? env.get(`ETCD_${flag.toUpperCase().replaceAll("-", "_")}`);
  const urls = (flag: string) =>
    (setting(flag) ?? "")
      .split(",")
      .map((url) => url.trim())
      .filter((url) => url !== "");

  // etcd's own defaults when a setting is absent.
  const listenClientUrls = urls("listen-client-urls");
  const advertiseClientUrls = urls("advertise-client-urls");
  const local = chooseLocalClientUrl(
    listenClientUrls.length > 0 ? listenClientUrls : ["http://localhost:2379"],
  );
  const { ready, notReady } = podReadiness(pod, containerName);
  const rootPasswordEnv = ["ETCD_ROOT_PASSWORD"].find((name) =>
    (container.env ?? []).some((entry) => entry.name === name),
  );
  return {
    namespace,
    podName,
    container: containerName,
    nodeName: pod.spec?.nodeName,
    podIP: pod.status?.podIP,
    hostNetwork: pod.spec?.hostNetwork ?? false,
    image: container.image,
    phase: pod.status?.phase ?? "Unknown",
    ready,
    notReady,
    memberName: setting("name"),
    advertiseClientUrls: advertiseClientUrls.length > 0 ? advertiseClientUrls : ["http://localhost:2379"],
    listenClientUrls,
    localClientUrl: local.url,
    listensOnLoopback: local.loopback,
    clientPort: Number(new URL(local.url).port || (local.url.startsWith("https:") ? 443 : 80)),
    tls: {
      certFile: setting("cert-file"),
      keyFile: setting("key-file"),
      trustedCaFile: setting("trusted-ca-file"),
    },
    clientCertAuth: ["true", "1"].includes((setting("client-cert-auth") ?? "false").toLowerCase()),
    dataDir: setting("data-dir"),
    configFile: setting("config-file"),
    rootPasswordEnv,
  };
}

/** `--flag=value`, `--flag value`, `-flag=value` (Go's flag package); a shell script's words too. */
function parseFlags(parts: string[]): Map<string, string> {
  const tokens = parts.flatMap((part) =>
    /\s/.test(part) && part.includes("-") ? part.split(/\s+/) : [part],
  );
  const flags = new Map<string, string>();
  for (let index = 0; index < tokens.length; index++) {
    const token = (tokens[index] as string).replace(/^["']|["']$/g, "");
    const match = /^--?([a-z0-9][a-z0-9-]*)(?:=(.*))?$/.exec(token);
    if (!match) continue;
    const name = match[1] as string;
    let value = match[2];
    if (value === undefined) {
      const next = tokens[index + 1];
      if (booleanFlags.has(name) || next === undefined || next.startsWith("-")) value = "true";
      else {
        value = next.replace(/^["']|["']$/g, "");
        index++;
      }
    }
    // As Go's flag package: the last occurrence wins.
    flags.set(name, value);
  }
  return flags;
}

/** The container's environment as Kubernetes builds it: literal values and the pod fields it can see. */
function containerEnvironment(pod: V1Pod, container: V1Container): Map<string, string> {
  const env = new Map<string, string>();
  for (const entry of container.env ?? []) {
    const value = environmentValue(pod, entry, env);
    if (value !== undefined) env.set(entry.name, value);
  }
  return env;
}

function environmentValue(pod: V1Pod, entry: V1EnvVar, earlier: Map<string, string>): string | undefined {
  // A value may refer only to variables defined before it.
  if (entry.value !== undefined) return expandReferences(entry.value, earlier);
  const fieldPath = entry.valueFrom?.fieldRef?.fieldPath;
  if (!fieldPath) return undefined; // secretKeyRef, configMapKeyRef: not readable with the backup's RBAC
  const labelOrAnnotation = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (labelOrAnnotation) {
    const source = labelOrAnnotation[1] === "labels" ? pod.metadata?.labels : pod.metadata?.annotations;
    return source?.[labelOrAnnotation[2] as string];
  }
  const fields: Record<string, string | undefined> = {
    "metadata.name": pod.metadata?.name,
    "metadata.namespace": pod.metadata?.namespace,
    "metadata.uid": pod.metadata?.uid,
    "spec.nodeName": pod.spec?.nodeName,
    "spec.serviceAccountName": pod.spec?.serviceAccountName,
    "status.podIP": pod.status?.podIP,
    "status.hostIP": pod.status?.hostIP,
  };
  return fields[fieldPath];
}

/** Kubernetes' `$(VAR)` expansion in env values, command and args: `$$` escapes, unknown names stay. */
function expandReferences(text: string, env: Map<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (whole, name: string | undefined) => {
    if (name === undefined) return "$";
    return env.get(name) ?? whole;
  });
}

function chooseLocalClientUrl(listen: string[]): { url: string; loopback: boolean } {
  const parsed = listen
    .filter((url) => /^https?:\/\//.test(url))
    .map((url) => {
      const u = new URL(url);
      return { url: u, host: u.hostname.replace(/^\[|\]$/g, "") };
    });
  const loopback = parsed.find(({ host }) => ["127.0.0.1", "localhost", "::1"].includes(host));
  const wildcard = parsed.find(({ host }) => ["0.0.0.0", "::", ""].includes(host));
  // 127.0.0.1 rather than localhost: etcdctl against localhost under exec has been seen to hang (etcd#13166).
  const onLoopback = (u: URL) =>
    `${u.protocol}//${u.hostname === "[::1]" ? "[::1]" : "127.0.0.1"}:${u.port || "2379"}`;
  if (loopback) return { url: onLoopback(loopback.url), loopback: true };
  if (wildcard)
    return { url: `${wildcard.url.protocol}//127.0.0.1:${wildcard.url.port || "2379"}`, loopback: true };
  const first = parsed[0];
  if (first) return { url: `${first.url.protocol}//${first.url.host}`, loopback: false };
  return { url: "http://127.0.0.1:2379", loopback: true };
}

function podReadiness(pod: V1Pod, containerName: string): { ready: boolean; notReady: string | undefined } {
  const phase = pod.status?.phase ?? "Unknown";
  if (pod.metadata?.deletionTimestamp) return { ready: false, notReady: "is being deleted" };
  if (phase !== "Running") return { ready: false, notReady: `is ${phase}` };
  const status = pod.status?.containerStatuses?.find((candidate) => candidate.name === containerName);
  if (status && !status.ready) {
    const waiting = status.state?.waiting?.reason;
    return {
      ready: false,
      notReady: `container ${containerName} is not ready${waiting ? ` (${waiting})` : ""}`,
    };
  }
  const condition = pod.status?.conditions?.find((candidate) => candidate.type === "Ready");
  if (condition?.status !== "True") return { ready: false, notReady: "is not Ready" };
  return { ready: true, notReady: undefined };
}

// ---- listing -----------------------------------------------------------------------------------

export interface DiscoveredMembers {
  /** Every matching pod that has the etcd container, ready or not, in name order. */
  members: EtcdMemberPod[];
  /** Matching pods without the etcd container (e.g. a chart's defrag or snapshot jobs). */
  skipped: Array<{ pod: string; reason: string }>;
  apiServer: string;
}

/** Lists the pods of the selector and reads each member; the only call is `list pods` in the namespace. */
export async function discoverEtcdMembers(
  config: KubeConfig,
  selector: MemberSelector,
): Promise<DiscoveredMembers> {
  const apiServer = apiServerOf(config);
  const where = `selector "${selector.selector}" in namespace "${selector.namespace}"`;
  let pods: V1Pod[];
  try {
    pods = await listPods(config, selector.namespace, selector.selector);
  } catch (error) {
    throw kubernetesApiFailure(error, `cannot list etcd pods (${where})`, config);
  }
  if (pods.length === 0) {
    throw new InvalidInputError(
      `no pods match ${where} at ${apiServer}: check etcd.namespace and etcd.selector ` +
        `(kubeadm: kube-system and component=etcd; the Bitnami chart: the release's namespace and app.kubernetes.io/name=etcd). ` +
        `Managed control planes such as EKS, GKE and AKS run etcd out of sight: there is no etcd pod to back up there.`,
    );
  }
  const members: EtcdMemberPod[] = [];
  const skipped: DiscoveredMembers["skipped"] = [];
  for (const pod of pods) {
    try {
      members.push(parseEtcdMemberPod(pod, selector.container));
    } catch (error) {
      if (!(error instanceof ContainerMissingError)) throw error;
      skipped.push({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, reason: error.message });
    }
  }
  if (members.length === 0) {
    throw new ContainerMissingError(
      `no pod matching ${where} has a container "${selector.container}": ${skipped.map((entry) => entry.reason).join("; ")}`,
    );
  }
  members.sort((a, b) => a.podName.localeCompare(b.podName));
  return { members, skipped, apiServer };
}

// ---- choosing ----------------------------------------------------------------------------------

/** What the caller learnt from a member (e.g. its etcd Status through exec or a port-forward). */
export interface MemberHealth {
  healthy: boolean;
  /** Known only from a status call; undefined when not asked. */
  isLeader?: boolean | undefined;
  problem?: string | undefined;
}

/** The ready members, for the caller to ask about their health. */
export function readyMembers(members: EtcdMemberPod[]): EtcdMemberPod[] {
  return members.filter((member) => member.ready);
}

/** The ready members other than the chosen one: asked for their HashKV once its snapshot is verified. */
export function readyPeersOf(members: EtcdMemberPod[], chosen: EtcdMemberPod): EtcdMemberPod[] {
  return readyMembers(members).filter((member) => memberKey(member) !== memberKey(chosen));
}

/**
 * The member to snapshot: ready and not reported unhealthy; a known follower before a member of unknown
 * role, and the leader last, so that the leader keeps its attention for the cluster. Pure.
 */
export function chooseMemberPod(
  members: EtcdMemberPod[],
  health: ReadonlyMap<string, MemberHealth> = new Map(),
): EtcdMemberPod {
  const ready = readyMembers(members);
  if (ready.length === 0) {
    const reasons = members.map((member) => `${memberKey(member)} ${member.notReady ?? "is not ready"}`);
    throw new EtcdUnavailableError(`no etcd pod is ready: ${reasons.join("; ")}`);
  }
  const healthy = ready.filter((member) => health.get(memberKey(member))?.healthy !== false);
  if (healthy.length === 0) {
    const problems = ready.map(
      (member) => `${memberKey(member)}: ${health.get(memberKey(member))?.problem ?? "unhealthy"}`,
    );
    throw new EtcdUnavailableError(`no ready etcd member is healthy: ${problems.join("; ")}`);
  }
  const rank = (member: EtcdMemberPod) => {
    const isLeader = health.get(memberKey(member))?.isLeader;
    return isLeader === false ? 0 : isLeader === undefined ? 1 : 2;
  };
  return [...healthy].sort(
    (a, b) => rank(a) - rank(b) || a.podName.localeCompare(b.podName),
  )[0] as EtcdMemberPod;
}
