// The `pod` node executor's objects, built without touching the API: one Secret per restore (the agent
// script and each member's presigned plan and status URLs) and one pod per member, pinned to the member's
// node with the host network, the host PID namespace and host mounts of exactly the paths its plan names,
// so that the agent script runs in it unchanged. The URLs reach the agent as environment variables from the
// Secret: a pod spec is readable by anyone who may get pods, a Secret's data is not.
import { createHash } from "node:crypto";
import { posix } from "node:path";
import type { V1Pod, V1Secret, V1Toleration, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import { apiServerReadyUrlOf, type RestoreLayout } from "../config/target-config.js";
import { agentExecutionMarginSeconds, restoreWorkSeconds } from "./restore-timeouts.js";

/** What each agent pod carries: the member's node, the paths its plan names, and its launch URLs. */
export interface AgentPodMember {
  member: string;
  nodeName: string;
  dataDir: string;
  manifestDir: string;
  planUrl: string;
  statusUrl: string;
}

export const agentPodLabels = {
  name: "app.kubernetes.io/name",
  managedBy: "app.kubernetes.io/managed-by",
  restore: "etcd-backup.io/restore",
} as const;

export const agentPodAnnotations = {
  restoreId: "etcd-backup.io/restore-id",
  member: "etcd-backup.io/member",
} as const;

/** Where the Secret's agent script is mounted in each pod. */
export const agentScriptMountPath = "/opt/etcd-restore-agent";
const agentScriptKey = "etcd-restore-agent.sh";

/**
 * The pods outlive no restore: the state machine's own work bound (after approval) plus the margin that the
 * ssm executor's executionTimeout also has (restore-timeouts.ts).
 */
export const agentPodDeadlineSeconds = restoreWorkSeconds + agentExecutionMarginSeconds;

/**
 * Control-plane nodes are tainted NoSchedule (`control-plane`; `master` before 1.25). The agent must also
 * run on a node tainted for other reasons (a dedicated etcd pool, a NoExecute taint such as
 * unreachable during the outage it repairs), so it tolerates every taint: it is pinned by nodeName,
 * so a toleration widens nothing but its staying power on the node it was sent to.
 */
export const agentPodTolerations: V1Toleration[] = [
  { key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" },
  { key: "node-role.kubernetes.io/master", operator: "Exists", effect: "NoSchedule" },
  { operator: "Exists" },
];

/** A short, stable label value and name part for a restore id (which may be 100 characters, with `_`). */
export function agentRestoreKey(restoreId: string): string {
  return createHash("sha256").update(restoreId).digest("hex").slice(0, 12);
}

export function agentSecretName(restoreId: string): string {
  return `etcd-restore-${agentRestoreKey(restoreId)}`;
}

/** The member's position in the layout names its pod: member names need not be DNS labels. */
export function agentPodName(restoreId: string, memberIndex: number): string {
  return `etcd-restore-${agentRestoreKey(restoreId)}-${memberIndex}`;
}

function labelsFor(restoreId: string): Record<string, string> {
  return {
    [agentPodLabels.name]: "etcd-restore-agent",
    [agentPodLabels.managedBy]: "etcd-backup",
    [agentPodLabels.restore]: agentRestoreKey(restoreId),
  };
}

/** The Secret of one restore: the script once, and `<index>-plan-url` / `<index>-status-url` per member. */
export function buildAgentSecret(
  restoreId: string,
  namespace: string,
  script: string,
  members: readonly AgentPodMember[],
): V1Secret {
  const urls: Record<string, string> = {};
  members.forEach((member, index) => {
    urls[`${index}-plan-url`] = member.planUrl;
    urls[`${index}-status-url`] = member.statusUrl;
  });
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: agentSecretName(restoreId),
      namespace,
      labels: labelsFor(restoreId),
      annotations: { [agentPodAnnotations.restoreId]: restoreId },
    },
    type: "Opaque",
    stringData: { [agentScriptKey]: script, ...urls },
  };
}

/** A host directory mounted at the same path, so that the plan's paths hold inside the pod. */
interface HostMount {
  path: string;
  readOnly: boolean;
  /** May be missing on the node: mounted without the hostPath type check. */
  optional?: boolean;
}

/**
 * The host directories the agent touches: the data dir's parent (the restored, pre-restore and failed dirs
 * and the download are its siblings; a volume mounted at the data dir comes with it, as the runtime binds
 * hostPath volumes recursively), the manifest dir's parent (the manifest dir and its parked sibling),
 * the restore tool's dir and the API server CA's dir (read-only). Nested or repeated paths
 * are mounted once, at the outermost.
 */
export function agentHostMounts(layout: RestoreLayout, member: AgentPodMember): HostMount[] {
  const manifestDir = member.manifestDir.replace(/\/+$/, "");
  // Unset, the URL comes from kube-apiserver's manifest and is asked too; only "none" asks nothing.
  const asksReadiness =
    Boolean(layout.apiServerManifest) &&
    layout.members.some((entry) => apiServerReadyUrlOf(layout, entry) !== "none");
  const wanted: HostMount[] = [
    { path: posix.dirname(member.dataDir.replace(/\/+$/, "")), readOnly: false },
    // The manifest dir's parent holds it and its parked sibling in one mount, so that parking a manifest
    // and putting it back are renames, which the kubelet never sees half-written (a move between two
    // mounts is a copy).
    { path: posix.dirname(manifestDir), readOnly: false },
    ...(layout.toolPath ? [{ path: posix.dirname(layout.toolPath), readOnly: true }] : []),
    // The CA that verifies the readiness URL; kubeadm's by default, which may be absent (then unchecked).
    ...(asksReadiness || layout.apiServerCaFile
      ? [
          {
            path: posix.dirname(layout.apiServerCaFile ?? "/etc/kubernetes/pki/ca.crt"),
            readOnly: true,
            optional: layout.apiServerCaFile === undefined,
          },
        ]
      : []),
  ];
  const within = (inner: string, outer: string) =>
    inner === outer || inner.startsWith(outer === "/" ? "/" : `${outer}/`);
  const mounts: HostMount[] = [];
  // Outermost first: a path inside one already mounted is served by it (and makes it writable if need be).
  for (const mount of [...wanted].sort((a, b) => a.path.length - b.path.length)) {
    const outer = mounts.find((existing) => within(mount.path, existing.path));
    if (outer) {
      outer.readOnly &&= mount.readOnly;
      outer.optional &&= mount.optional;
      continue;
    }
    mounts.push({ ...mount });
  }
  return mounts;
}

/** The pod of one member. Its URLs come from the restore's Secret, never from the spec. */
export function buildAgentPod(
  layout: RestoreLayout,
  restoreId: string,
  member: AgentPodMember,
  memberIndex: number,
): V1Pod {
  const namespace = layout.pod.namespace;
  const secretName = agentSecretName(restoreId);
  const hostMounts = agentHostMounts(layout, member);
  const volumes: V1Volume[] = hostMounts.map((mount, index) => ({
    name: `host-${index}`,
    hostPath: {
      path: mount.path,
      type: mount.optional ? "" : "Directory",
    },
  }));
  const volumeMounts: V1VolumeMount[] = hostMounts.map((mount, index) => ({
    name: `host-${index}`,
    mountPath: mount.path,
    readOnly: mount.readOnly,
  }));
  volumes.push(
    {
      name: "agent-script",
      secret: { secretName, items: [{ key: agentScriptKey, path: agentScriptKey }], defaultMode: 0o500 },
    },
    { name: "tmp", emptyDir: {} },
  );
  volumeMounts.push(
    { name: "agent-script", mountPath: agentScriptMountPath, readOnly: true },
    { name: "tmp", mountPath: "/tmp" },
  );
  const url = (kind: "plan" | "status") => ({
    valueFrom: { secretKeyRef: { name: secretName, key: `${memberIndex}-${kind}-url` } },
  });
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: agentPodName(restoreId, memberIndex),
      namespace,
      labels: labelsFor(restoreId),
      annotations: {
        [agentPodAnnotations.restoreId]: restoreId,
        [agentPodAnnotations.member]: member.member,
      },
    },
    spec: {
      nodeName: member.nodeName,
      hostNetwork: true,
      hostPID: true,
      // The node's own resolver: S3's name must resolve while the cluster's DNS may be acting on a stopped API.
      dnsPolicy: "Default",
      restartPolicy: "Never",
      activeDeadlineSeconds: agentPodDeadlineSeconds,
      // Time for a last readiness ask and the status write when the kubelet stops the agent after the
      // restored API serves (the agent exits as soon as it has reported).
      terminationGracePeriodSeconds: 30,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      // Scheduled straight onto the node: no preemption, and the critical class keeps eviction away.
      priorityClassName: namespace === "kube-system" ? "system-node-critical" : undefined,
      tolerations: agentPodTolerations,
      volumes,
      containers: [
        {
          name: "agent",
          image: layout.pod.agentImage,
          imagePullPolicy: "IfNotPresent",
          command: [
            "bash",
            "-c",
            `exec bash ${agentScriptMountPath}/${agentScriptKey} "$PLAN_URL" "$STATUS_URL"`,
          ],
          env: [
            { name: "PLAN_URL", ...url("plan") },
            { name: "STATUS_URL", ...url("status") },
            // The kubelet may stop it once another node's restored API server serves (the agent's on_signal).
            { name: "ETCD_RESTORE_AGENT_RUNS_AS_POD", value: "1" },
          ],
          volumeMounts,
          securityContext: {
            // Root, for the root-owned host paths, with only the capabilities file work needs.
            runAsUser: 0,
            privileged: false,
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ["ALL"], add: ["CHOWN", "DAC_OVERRIDE", "FOWNER"] },
          },
          resources: { requests: { cpu: "50m", memory: "64Mi" } },
        },
      ],
    },
  };
}
