// The pod executor's objects, built from a restore layout: what each agent pod mounts, where it runs,
// what it tolerates and may do, and that no presigned URL is ever in a pod spec; and the layout's checks.
import { describe, expect, it } from "vitest";
import { defaultAgentImage, parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import { InvalidInputError } from "../../lambdas/core/errors.js";
import {
  type AgentPodMember,
  agentPodDeadlineSeconds,
  agentPodName,
  agentSecretName,
  buildAgentPod,
  buildAgentSecret,
} from "../../lambdas/core/restore/agent-pods.js";

const secretArn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kubeconfig";

function podTarget(
  restore: Record<string, unknown>,
  access: Record<string, unknown> = { kind: "kubeconfig", secretArn },
) {
  return parseTargetsFile({
    targets: [
      {
        name: "kubeadm",
        schedule: "rate(1 hour)",
        access,
        restore: {
          executor: "pod",
          toolPath: "/usr/local/bin/etcdutl",
          members: [
            {
              name: "cp-1",
              nodeName: "ip-10-0-0-1.eu-west-1.compute.internal",
              clientUrl: "https://10.0.0.1:2379",
              peerUrl: "https://10.0.0.1:2380",
            },
          ],
          ...restore,
        },
      },
    ],
  }).targets[0]?.restore;
}

const layout = podTarget({ apiServerReadyUrl: "https://127.0.0.1:6443/readyz" });
if (!layout) throw new Error("no layout");
const restoreId = "restore_2026-11-24T01.00";
const planUrl = "https://bucket.s3.amazonaws.com/p/plan.txt?X-Amz-Signature=plan-signature";
const statusUrl = "https://bucket.s3.amazonaws.com/p/status.json?X-Amz-Signature=status-signature";
const member: AgentPodMember = {
  member: "cp-1",
  nodeName: "ip-10-0-0-1.eu-west-1.compute.internal",
  dataDir: "/var/lib/etcd",
  manifestDir: "/etc/kubernetes/manifests",
  planUrl,
  statusUrl,
};

describe("the agent pod of a member", () => {
  const pod = buildAgentPod(layout, restoreId, member, 0);
  const spec = pod.spec ?? { containers: [] };
  const container = spec.containers[0];

  it("is pinned to the member's node, on the host network and PID namespace, never restarted, and bounded", () => {
    expect(spec.nodeName).toBe(member.nodeName);
    expect(spec.hostNetwork).toBe(true);
    expect(spec.hostPID).toBe(true);
    expect(spec.restartPolicy).toBe("Never");
    expect(spec.activeDeadlineSeconds).toBe(agentPodDeadlineSeconds);
    expect(agentPodDeadlineSeconds).toBe(5 * 3600);
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(spec.dnsPolicy).toBe("Default");
    expect(pod.metadata?.namespace).toBe("kube-system");
    expect(pod.metadata?.name).toBe(agentPodName(restoreId, 0));
    expect(pod.metadata?.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(pod.metadata?.annotations).toMatchObject({
      "etcd-backup.io/restore-id": restoreId,
      "etcd-backup.io/member": "cp-1",
    });
    expect(pod.metadata?.labels?.["etcd-backup.io/restore"]).toMatch(/^[0-9a-f]{12}$/);
  });

  it("tolerates the control-plane taints, old and new, and any other taint of the node it is pinned to", () => {
    expect(spec.tolerations).toEqual(
      expect.arrayContaining([
        { key: "node-role.kubernetes.io/control-plane", operator: "Exists", effect: "NoSchedule" },
        { key: "node-role.kubernetes.io/master", operator: "Exists", effect: "NoSchedule" },
        { operator: "Exists" },
      ]),
    );
  });

  it("runs as root with only the file capabilities, no privilege escalation, a read-only root", () => {
    expect(container?.securityContext).toEqual({
      runAsUser: 0,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"], add: ["CHOWN", "DAC_OVERRIDE", "FOWNER"] },
    });
    expect(container?.image).toBe(defaultAgentImage);
  });

  it("mounts every host path the plan names at the same path, and the script from the Secret", () => {
    const volumes = new Map((spec.volumes ?? []).map((volume) => [volume.name, volume]));
    const mounts = (container?.volumeMounts ?? []).map((mount) => ({
      path: mount.mountPath,
      readOnly: mount.readOnly ?? false,
      hostPath: volumes.get(mount.name)?.hostPath,
      secret: volumes.get(mount.name)?.secret?.secretName,
    }));
    expect(mounts).toEqual(
      expect.arrayContaining([
        // The data dir's parent: the restored, pre-restore and failed dirs are the data dir's siblings.
        {
          path: "/var/lib",
          readOnly: false,
          hostPath: { path: "/var/lib", type: "Directory" },
          secret: undefined,
        },
        // The manifest dir and its parked sibling, in one mount: parking a manifest is a rename.
        {
          path: "/etc/kubernetes",
          readOnly: false,
          hostPath: { path: "/etc/kubernetes", type: "Directory" },
          secret: undefined,
        },
        {
          path: "/usr/local/bin",
          readOnly: true,
          hostPath: { path: "/usr/local/bin", type: "Directory" },
          secret: undefined,
        },
        {
          path: "/opt/etcd-restore-agent",
          readOnly: true,
          hostPath: undefined,
          secret: agentSecretName(restoreId),
        },
      ]),
    );
    expect(mounts).toHaveLength(5); // and /tmp, an emptyDir under the read-only root
    expect(mounts.find((mount) => mount.path === "/tmp")?.hostPath).toBeUndefined();
  });

  it("mounts the API server's CA dir read-only, unchecked when it is kubeadm's default, apart from the manifests", () => {
    const apart = buildAgentPod(layout, restoreId, { ...member, manifestDir: "/srv/manifests" }, 0);
    const volume = apart.spec?.volumes?.find(
      (candidate) => candidate.hostPath?.path === "/etc/kubernetes/pki",
    );
    expect(volume?.hostPath?.type).toBe("");
    const mount = apart.spec?.containers[0]?.volumeMounts?.find(
      (candidate) => candidate.name === volume?.name,
    );
    expect(mount).toMatchObject({ mountPath: "/etc/kubernetes/pki", readOnly: true });
  });

  it("mounts a path once, at the outermost directory, writable if anything inside must be", () => {
    const nested = buildAgentPod(
      layout,
      restoreId,
      { ...member, dataDir: "/srv/etcd/data", manifestDir: "/srv/etcd/static/manifests/" },
      1,
    );
    const paths = (nested.spec?.containers[0]?.volumeMounts ?? []).map((mount) => mount.mountPath);
    expect(paths).toContain("/srv/etcd");
    expect(paths.filter((path) => path.startsWith("/srv/etcd/"))).toEqual([]);
  });

  it("reads its URLs from the Secret: no presigned URL is anywhere in the pod", () => {
    const text = JSON.stringify(pod);
    expect(text).not.toContain("X-Amz-Signature");
    expect(text).not.toContain("s3.amazonaws.com");
    expect(container?.env).toEqual([
      {
        name: "PLAN_URL",
        valueFrom: { secretKeyRef: { name: agentSecretName(restoreId), key: "0-plan-url" } },
      },
      {
        name: "STATUS_URL",
        valueFrom: { secretKeyRef: { name: agentSecretName(restoreId), key: "0-status-url" } },
      },
      { name: "ETCD_RESTORE_AGENT_RUNS_AS_POD", value: "1" },
    ]);
    expect(container?.command?.join(" ")).toContain('"$PLAN_URL" "$STATUS_URL"');
  });

  it("has a Secret per restore holding the script and each member's URLs", () => {
    const secret = buildAgentSecret(restoreId, "kube-system", "#!/usr/bin/env bash\n", [member]);
    expect(secret.metadata?.name).toBe(agentSecretName(restoreId));
    expect(secret.stringData).toEqual({
      "etcd-restore-agent.sh": "#!/usr/bin/env bash\n",
      "0-plan-url": planUrl,
      "0-status-url": statusUrl,
    });
    expect(secret.metadata?.labels).toEqual(pod.metadata?.labels);
  });

  it("takes the agent image and namespace from the layout (air-gapped clusters)", () => {
    const custom = podTarget({
      pod: { agentImage: "registry.internal/tools/agent@sha256:abc", namespace: "etcd-restore" },
    });
    if (!custom) throw new Error("no layout");
    const built = buildAgentPod(custom, restoreId, member, 0);
    expect(built.spec?.containers[0]?.image).toBe("registry.internal/tools/agent@sha256:abc");
    expect(built.metadata?.namespace).toBe("etcd-restore");
    expect(built.spec?.priorityClassName).toBeUndefined();
    expect(built.spec?.containers[0]?.volumeMounts?.map((mount) => mount.mountPath)).not.toContain(
      "/etc/kubernetes/pki",
    );
  });
});

describe("a pod executor layout", () => {
  it("needs every member's node", () => {
    expect(() =>
      podTarget({
        members: [{ name: "cp-1", clientUrl: "https://10.0.0.1:2379", peerUrl: "https://10.0.0.1:2380" }],
      }),
    ).toThrow(/targets\.0\.restore\.members\.0\.nodeName: the pod executor pins cp-1's agent to its node/);
  });

  it("needs the restore tool from the node or staged in the bucket, not both", () => {
    expect(() => podTarget({ toolPath: undefined })).toThrow(
      /restore\.toolPath: the pod executor's image has no etcdutl: give its path on the node \(toolPath\) or stage it in the bucket \(toolObject\)/,
    );
    const staged = { name: "etcdutl-3.5.17", sha256: "b".repeat(64) };
    expect(podTarget({ toolPath: undefined, toolObject: staged })?.toolObject).toEqual(staged);
    expect(() => podTarget({ toolObject: staged })).toThrow(
      /restore\.toolObject: give the restore tool's path on the nodes or its object in the bucket, not both/,
    );
  });

  it("needs the Kubernetes API: direct access is refused", () => {
    expect(() => podTarget({}, { kind: "direct" })).toThrow(InvalidInputError);
    expect(() => podTarget({}, { kind: "direct" })).toThrow(
      /restore\.executor: the pod executor creates its pods through the Kubernetes API/,
    );
  });

  it("names a bad agent namespace", () => {
    expect(() => podTarget({ pod: { namespace: "Kube_System" } })).toThrow(
      /restore\.pod\.namespace: a namespace name/,
    );
  });

  it("defaults to kube-system and the pinned public image", () => {
    expect(layout.pod).toEqual({ agentImage: defaultAgentImage, namespace: "kube-system" });
  });
});
