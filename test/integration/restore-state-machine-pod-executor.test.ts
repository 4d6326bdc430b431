// The restore state machine with the pod executor, on a three-member etcd run as static pods: the real
// handlers reach the stand-in API server with the target's kubeconfig (its secret through a mocked Secrets
// Manager, which has no local stand-in), the safety snapshot streams through a port-forward to the etcd
// pods, StartAgentPods creates the restore's Secret and one agent pod per member, and the stand-in plays
// each node's kubelet: it runs the pod as posted (the agent script from the Secret's volume, the presigned
// URLs from the Secret's keys, the host paths the pod mounts), so that the agent script drives the local
// members through their manifests exactly as on a node. Nothing but the state machine and the pods it
// creates touches etcd.
import { readdir, readFile, writeFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEtcdWriter } from "../../cli/local/etcd-writer.js";
import { type LocalStack, startLocalStack } from "../../cli/local/local-stack.js";
import type { PublishedMessage } from "../../cli/local/local-state-machine.js";
import { runLocalBackup, runLocalRestore } from "../../cli/local/local-workflows.js";
import type { SnapshotRecord } from "../../lambdas/core/catalogue/snapshot-record.js";
import { ErrorNames } from "../../lambdas/core/errors.js";
import { agentPodName, agentSecretName } from "../../lambdas/core/restore/agent-pods.js";
import { restoreIdFor } from "../../lambdas/core/restore/restore-plans-step.js";
import { type KubeApiStandIn, startKubeApiStandIn } from "../support/kube-api-server/index.js";
import { registryEntries } from "../support/registry-entries.js";

const cluster = "kube-pods";
/** The same cluster, with one member's agent pod unable to start: its data dir's parent is not on the node. */
const stuckCluster = "kube-pods-stuck";
const missingHostDir = "/nonexistent-etcd-backup-test";
const agentNamespace = "etcd-restore";
const kubeconfigSecretArn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kube-pods-kubeconfig";
const secrets = mockClient(SecretsManagerClient);

let stack: LocalStack;
let standIn: KubeApiStandIn;
let snapshot: SnapshotRecord;
/** Whether the stand-in's authorizer lets the restore create pods. */
let podsMayBeCreated = true;

/** Every /registry/ key and its value, as member `index` serves them. */
function registry(index: number): Promise<Map<string, string>> {
  return registryEntries(stack.etcd.nodes[index]?.clientUrl as string);
}

/** The local stack's own target, reached through the stand-in API server and restored by agent pods. */
async function addPodExecutorTarget(): Promise<void> {
  const file = stack.environment.targetsFile as string;
  const targets = JSON.parse(await readFile(file, "utf8")) as {
    targets: Array<{ name: string; restore: Record<string, unknown> & { members: object[] } }>;
  };
  const local = targets.targets[0];
  if (!local) throw new Error("the local stack has no target");
  targets.targets.push({
    ...local,
    name: cluster,
    access: { kind: "kubeconfig", secretArn: kubeconfigSecretArn },
    // kubeadm's pods in kube-system; the grpc source through a port-forward to each pod's 2379.
    etcd: { source: "grpc" },
    restore: {
      ...local.restore,
      executor: "pod",
      pod: { namespace: agentNamespace },
      members: stack.etcd.nodes.map((node, index) => {
        const { instanceId: _ssmOnly, ...member } = local.restore.members[index] as Record<string, unknown>;
        return { ...member, nodeName: node.name };
      }),
    },
  } as (typeof targets.targets)[number]);
  const podTarget = targets.targets.at(-1) as (typeof targets.targets)[number];
  targets.targets.push({
    ...podTarget,
    name: stuckCluster,
    restore: {
      ...podTarget.restore,
      phaseTimeoutSeconds: 30, // the least a target may set
      members: podTarget.restore.members.map((member, index) =>
        index === 1 ? { ...member, dataDir: `${missingHostDir}/etcd` } : member,
      ),
    },
  });
  await writeFile(file, JSON.stringify(targets, null, 2));
}

async function restore(input: Record<string, unknown> = { cluster }) {
  const published: PublishedMessage[] = [];
  const result = await runLocalRestore(
    { snapshotId: snapshot.snapshotId, allowWithoutRevisionBump: true, ...input },
    {
      retryIntervalMs: 0,
      onApprovalRequested: (name) => stack.approvals.recordAnswer(name, { approved: true, by: "test" }),
      onPublish: (message) => published.push(message),
    },
  );
  const entered = result.states.filter((event) => event.type === "entered").map((event) => event.state);
  return { ...result, entered, published };
}

beforeAll(async () => {
  stack = await startLocalStack({ members: 3 });
  standIn = await startKubeApiStandIn({
    pods: stack.etcd.nodes.map((node) => ({
      name: `etcd-${node.name}`,
      namespace: "kube-system",
      labels: { component: "etcd", tier: "control-plane" },
      nodeName: node.name,
      hostNetwork: true,
      containers: [{ name: "etcd", image: "registry.k8s.io/etcd:3.5.16-0" }],
      portMap: { 2379: Number(new URL(node.clientUrl).port) },
    })),
    namespaces: [agentNamespace],
    authorize: (request) =>
      podsMayBeCreated ||
      !(request.verb === "create" && request.resource === "pods" && request.subresource === undefined),
    // Each node's kubelet: runs the agent pods; the agents poll faster than on a node.
    runCreatedPods: { env: { ETCD_RESTORE_AGENT_POLL_SECONDS: "0.3" } },
  });
  secrets
    .on(GetSecretValueCommand, { SecretId: kubeconfigSecretArn })
    .resolves({ SecretString: await readFile(standIn.kubeconfigPath, "utf8") });
  await addPodExecutorTarget();
  const writer = createEtcdWriter({ endpoints: stack.etcd.nodes.map((node) => node.clientUrl) });
  await writer.putMany(
    Array.from({ length: 60 }, (_, index) => [`/registry/pods/default/p-${index}`, `v-${index}`]),
  );
  const backup = await runLocalBackup({ cluster }, { retryIntervalMs: 0 });
  expect(backup.status).toBe("SUCCEEDED");
  snapshot = (await stack.catalogue.findLatestVerified(cluster)) as SnapshotRecord;
  await writer.putMany(
    Array.from({ length: 5 }, (_, index) => [`/registry/events/default/after-${index}`, `late-${index}`]),
  );
}, 180_000);

afterAll(async () => {
  secrets.restore();
  await standIn?.stop();
  await stack?.stop();
});

describe("the restore state machine with the pod executor", () => {
  it("changes nothing, and leaves no agent object, when the agent pods cannot be created", async () => {
    const before = await registry(0);
    podsMayBeCreated = false;
    const failed = await restore().finally(() => {
      podsMayBeCreated = true;
    });

    expect(failed.status).toBe("FAILED");
    expect(failed.error?.name).toBe("RestoreFailed");
    expect(failed.entered).toContain("StartAgentPods");
    expect(failed.entered).toContain("RemoveAgentPodsBeforeChanges");
    expect(failed.entered).not.toContain("Phase_stop");
    const notice = failed.published.at(-1)?.message ?? "";
    expect(notice).toContain(
      `${ErrorNames.KubernetesAccessDenied}: cannot create the restore agent pod of ${stack.etcd.nodes[0]?.memberName}`,
    );
    expect(notice).toMatch(/^Changes: +none/m);
    // The Secret created before the refused pod is deleted again; no agent ran; etcd kept its data.
    const restoreId = restoreIdFor(failed.executionArn);
    const deleted = standIn.requests.filter(
      (request) => request.method === "DELETE" && request.status === 200,
    );
    expect(deleted.map((request) => `${request.resource}/${request.name}`)).toContain(
      `secrets/${agentSecretName(restoreId)}`,
    );
    expect(standIn.podRuns.size).toBe(0);
    await stack.etcd.waitUntilHealthy(30_000);
    expect(await registry(0)).toEqual(before);
  }, 180_000);

  it("says why when an agent pod never starts, and changes nothing", async () => {
    const before = await registry(0);
    const stuck = await restore({ cluster: stuckCluster, sourceCluster: cluster, allowCrossCluster: true });

    expect(stuck.status).toBe("FAILED");
    expect(stuck.entered).toContain("RemoveAgentPods_abort");
    expect(stuck.entered).not.toContain("Phase_stop");
    const notice = stuck.published.at(-1)?.message ?? "";
    expect(notice).toMatch(/^Changes: +none — nothing on the nodes was touched/m);
    // The member whose agent never reported, and what its pod said before it was removed.
    const restoreId = restoreIdFor(stuck.executionArn);
    const member = stack.etcd.nodes[1]?.memberName as string;
    expect(notice).toMatch(new RegExp(`^Agents: .*${member}: none working — no status yet`, "m"));
    expect(notice).toContain(
      `${agentPodName(restoreId, 1)} (${member}): Pending — ContainerCreating; FailedMount: MountVolume.SetUp failed for volume`,
    );
    expect(notice).toContain(`hostPath type check failed: ${missingHostDir} is not a directory`);
    expect(notice).toContain(`${agentPodName(restoreId, 0)} (${stack.etcd.nodes[0]?.memberName}): `);
    expect(notice).not.toMatch(/^Leftovers:/m);
    await stack.etcd.waitUntilHealthy(30_000);
    expect(await registry(0)).toEqual(before);
  }, 180_000);

  it("restores every member through agent pods pinned to its node, then removes the pods and their Secret", async () => {
    const before = await registry(0);
    expect(before.size).toBe(65);
    const createdBefore = standIn.created.length;
    const restored = await restore();

    expect(restored.status).toBe("SUCCEEDED");
    expect(restored.entered).toContain("StartAgentPods");
    expect(restored.entered).toContain("RemoveAgentPods_finish");
    expect(restored.entered).toContain("CheckEtcdHealth");
    const restoreId = restoreIdFor(restored.executionArn);

    // One Secret, then one pod per member on the member's own node, each of which ran to completion.
    const created = standIn.created.slice(createdBefore);
    expect(created.map((object) => `${object.resource}/${object.name}`)).toEqual([
      `secrets/${agentSecretName(restoreId)}`,
      ...stack.etcd.nodes.map((_node, index) => `pods/${agentPodName(restoreId, index)}`),
    ]);
    for (const [index, node] of stack.etcd.nodes.entries()) {
      const pod = created[index + 1]?.object as { spec: { nodeName: string } };
      expect(pod.spec.nodeName).toBe(node.name);
      const ran = standIn.podRuns.get(`${agentNamespace}/${agentPodName(restoreId, index)}`);
      expect(ran, `the agent pod of ${node.memberName} ran`).toBeDefined();
      await ran?.exited;
      // Its output is the agent's own, as `kubectl logs` of the pod would show it.
      const log = await readFile(ran?.logFile as string, "utf8");
      expect(log).toMatch(/parked etcd\.json in /);
      expect(log).toContain("downloading the snapshot");
    }

    // Keys written before the snapshot are back with their values on every member; those after are gone.
    await stack.etcd.waitUntilHealthy(30_000);
    const expected = new Map([...before].filter(([key]) => !key.startsWith("/registry/events/")));
    for (const index of [0, 1, 2]) expect(await registry(index)).toEqual(expected);
    // The old data dirs are kept beside the restored ones, and the safety snapshot was taken.
    for (const node of stack.etcd.nodes) {
      const siblings = await readdir(dirname(node.dataDir));
      expect(siblings).toContain(`${basename(node.dataDir)}.pre-restore-${restoreId}`);
    }
    const safety = (await stack.catalogue.listSnapshots(cluster)).snapshots.filter((row) =>
      row.tags.includes("pre-restore"),
    );
    expect(safety.length).toBeGreaterThanOrEqual(1);

    // The pods and the Secret are removed once the restore has ended.
    const deleted = standIn.requests
      .filter((request) => request.method === "DELETE" && request.status === 200)
      .map((request) => `${request.resource}/${request.name}`);
    expect(deleted).toEqual(
      expect.arrayContaining([
        ...stack.etcd.nodes.map((_node, index) => `pods/${agentPodName(restoreId, index)}`),
        `secrets/${agentSecretName(restoreId)}`,
      ]),
    );
    expect(restored.published.at(-1)?.message).toMatch(/restored/i);
  }, 240_000);
});
