// Least privilege: the backup steps (resolve target, take snapshot) for `exec` and `grpc` targets reached
// through a kubeconfig kept in a secret, run against the stand-in API server whose authorizer is exactly
// deploy/rbac/etcd-backup-rbac.yaml. Every request must be allowed by that Role, and nothing else may be
// asked for; without the Role's `create` (Kubernetes 1.35's WebSocket check) or `list`, the steps fail
// with the API server's refusal.

import { readFile } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { loadAllYaml } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BackupDependencies, silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { resolveTarget } from "../../lambdas/core/backup/resolve-target-step.js";
import { takeSnapshot } from "../../lambdas/core/backup/take-snapshot-step.js";
import { verifySnapshot } from "../../lambdas/core/backup/verify-snapshot-step.js";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { ClusterLeases } from "../../lambdas/core/catalogue/cluster-lease.js";
import { SnapshotStatus } from "../../lambdas/core/catalogue/snapshot-record.js";
import { parseTargetsFile, type Target } from "../../lambdas/core/config/target-config.js";
import { KubernetesAccessDeniedError } from "../../lambdas/core/errors.js";
import { loadKubeConfigForAccess } from "../../lambdas/core/kube/kube-config.js";
import { agentPodName, agentSecretName } from "../../lambdas/core/restore/agent-pods.js";
import { removeAgentPods, startAgentPods } from "../../lambdas/core/restore/agent-pods-step.js";
import type { RestoreDependencies } from "../../lambdas/core/restore/restore-dependencies.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "../support/dynamodb-server.js";
import { type EtcdCluster, startEtcdCluster } from "../support/etcd-cluster.js";
import { createEtcdWriter } from "../support/etcd-writer.js";
import { type KubeApiStandIn, startKubeApiStandIn } from "../support/kube-api-server/index.js";
import { type RbacAuthorizer, rbacAuthorizerFromManifest } from "../support/rbac-authorizer.js";
import { type LocalS3, startLocalS3 } from "../support/s3-server.js";

const manifestPath = join(import.meta.dirname, "../../deploy/rbac/etcd-backup-rbac.yaml");
const secretArn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:etcd-backup-kubeconfig";
const prefix = "etcd-backup";
const tableName = "etcd-backup-catalogue";

let etcd: EtcdCluster;
let s3: LocalS3;
let dynamo: LocalDynamoDb;
let dynamoClient: DynamoDBClient;
let standIn: KubeApiStandIn;
let manifest: string;
let authorizer: RbacAuthorizer;

const targets = parseTargetsFile({
  prefix,
  targets: (["exec", "grpc"] as const).map((source) => ({
    name: `kubeadm-${source}`,
    schedule: "rate(1 hour)",
    access: { kind: "kubeconfig", secretArn },
    etcd: { source },
  })),
});

beforeAll(async () => {
  [etcd, s3, dynamo] = await Promise.all([startEtcdCluster(), startLocalS3(), startLocalDynamoDb()]);
  dynamoClient = new DynamoDBClient({
    endpoint: dynamo.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  await createCatalogueTable(dynamoClient, tableName);
  await createEtcdWriter(etcd).putMany(
    Array.from({ length: 120 }, (_, index) => [`/registry/leases/kube-system/l-${index}`, `holder-${index}`]),
  );
  manifest = await readFile(manifestPath, "utf8");
  authorizer = rbacAuthorizerFromManifest(manifest);
  const member = etcd.members[0];
  if (!member) throw new Error("no member");
  standIn = await startKubeApiStandIn({
    pods: [
      {
        name: "etcd-cp-0",
        namespace: "kube-system",
        nodeName: "cp-0",
        labels: { component: "etcd", tier: "control-plane" },
        hostNetwork: true,
        containers: [
          {
            name: "etcd",
            command: [
              "etcd",
              `--name=${member.name}`,
              `--listen-client-urls=${member.clientUrl}`,
              `--advertise-client-urls=${member.clientUrl}`,
              `--data-dir=${member.dataDir}`,
            ],
          },
        ],
      },
      // Pods elsewhere that the backup must not touch.
      { name: "etcd-0", namespace: "storage", labels: { component: "etcd" }, containers: [{ name: "etcd" }] },
    ],
    auth: { bearerTokens: [{ token: "backup-token", user: "etcd-backup", groups: ["etcd-backup"] }] },
    // Delegates, so that a test can swap the Role.
    authorize: (attributes) => authorizer.authorize(attributes),
  });
});

afterAll(async () => {
  await standIn?.stop();
  dynamoClient?.destroy();
  await Promise.all([etcd?.stop(), s3?.stop(), dynamo?.stop()]);
});

function dependencies(): BackupDependencies {
  return {
    s3: s3.client,
    catalogue: new CatalogueRepository({ client: dynamoClient, tableName }),
    leases: new ClusterLeases({ client: dynamoClient, tableName }),
    bucket: s3.bucket,
    prefix,
    loadTargets: async () => targets,
    loadEtcdTls: async () => undefined,
    // As the Lambda functions load it: the kubeconfig text from the target's secret.
    loadKubeConfig: (target: Target) => {
      if (target.access.kind === "direct") throw new Error("direct");
      return loadKubeConfigForAccess(target.access, {
        readSecret: async (arn) => {
          expect(arn).toBe(secretArn);
          return readFile(standIn.kubeconfigPath, "utf8");
        },
      });
    },
    now: () => new Date(),
    reporter: silentReporter,
  };
}

/** `verb resource[/subresource]` of every request recorded since `from`. */
function requestedSince(from: number): string[] {
  return standIn.requests
    .slice(from)
    .map(
      (request) =>
        `${request.verb} ${request.resource}${request.subresource ? `/${request.subresource}` : ""}`,
    );
}

describe("deploy/rbac/etcd-backup-rbac.yaml", () => {
  it("grants get/list on pods and get+create on pods/exec and pods/portforward in kube-system, to the group etcd-backup, and nothing else", () => {
    expect(manifest).toContain("kind: Role\n");
    expect(manifest).not.toMatch(/kind: ClusterRole/);
    const decide = (verb: string, resource: string, subresource?: string, namespace = "kube-system") =>
      rbacAuthorizerFromManifest(manifest).authorize({
        user: "someone",
        groups: ["etcd-backup", "system:authenticated"],
        verb,
        resourceRequest: true,
        path: "/",
        namespace,
        resource,
        subresource,
      });
    expect(decide("list", "pods")).toBe(true);
    expect(decide("get", "pods")).toBe(true);
    for (const subresource of ["exec", "portforward"]) {
      expect(decide("get", "pods", subresource)).toBe(true);
      expect(decide("create", "pods", subresource)).toBe(true);
    }
    expect(decide("watch", "pods")).toBe(false);
    expect(decide("delete", "pods")).toBe(false);
    expect(decide("create", "pods")).toBe(false);
    expect(decide("create", "pods", "attach")).toBe(false);
    expect(decide("get", "secrets")).toBe(false);
    expect(decide("list", "pods", undefined, "default")).toBe(false);
  });
  it("grants the same as the copy the CDK stack documents (infra/kubernetes/etcd-backup-rbac.yaml)", async () => {
    const grants = (text: string) =>
      (
        loadAllYaml(text) as Array<{
          kind: string;
          metadata: { namespace?: string };
          rules?: unknown;
          subjects?: unknown;
          roleRef?: unknown;
        }>
      )
        .map((object) => ({
          kind: object.kind,
          namespace: object.metadata.namespace,
          rules: object.rules,
          subjects: object.subjects,
          roleRef: object.roleRef,
        }))
        .sort((a, b) => a.kind.localeCompare(b.kind));
    const infraCopy = await readFile(
      join(import.meta.dirname, "../../infra/kubernetes/etcd-backup-rbac.yaml"),
      "utf8",
    );
    expect(grants(infraCopy)).toEqual(grants(manifest));
  });
});

describe("the backup steps under exactly that Role", () => {
  for (const source of ["exec", "grpc"] as const) {
    it(`${source}: resolve, snapshot and verify (with the member's HashKV) succeed, and every request is one the Role allows`, async () => {
      authorizer = rbacAuthorizerFromManifest(manifest);
      const from = standIn.requests.length;
      const input = { cluster: `kubeadm-${source}` };
      const executionArn = `arn:aws:states:local:0:execution:backup:${source}`;
      const resolved = await resolveTarget(dependencies(), input);
      expect(resolved.member).toMatchObject({
        endpoint: etcd.members[0]?.clientUrl,
        source,
        pod: { namespace: "kube-system", name: "etcd-cp-0", container: "etcd", nodeName: "cp-0" },
      });
      const stored = await takeSnapshot(dependencies(), input, executionArn, resolved);
      const metrics: Array<[string, number]> = [];
      const verified = await verifySnapshot(
        {
          ...dependencies(),
          reporter: { ...silentReporter, metric: (name, _unit, value) => metrics.push([name, value]) },
        },
        input,
        stored,
        resolved,
      );
      // What the divergence alarm watches: no member held other data.
      expect(metrics).toContainEqual(["MembersHashMismatched", 0]);
      expect(verified.liveKeyCount).toBe(120);
      // Asked through the same source as the snapshot: `etcdctl endpoint hashkv` in the pod, or gRPC
      // through a port-forward.
      expect(verified.memberHash).toMatchObject({ outcome: "matched", revision: verified.revision });
      const row = await dependencies().catalogue.getSnapshot(input.cluster, resolved.snapshotId);
      expect(row).toMatchObject({
        status: SnapshotStatus.Verified,
        sourceMember: `pod kube-system/etcd-cp-0 (${source})`,
        sha256: stored.sha256,
      });

      const subresource = source === "exec" ? "pods/exec" : "pods/portforward";
      // Discovery lists; the status call, the snapshot and the HashKV each open a stream; the snapshot and
      // verify steps read the pod again.
      expect(new Set(requestedSince(from))).toEqual(new Set(["list pods", `get ${subresource}`, "get pods"]));
      const recorded = standIn.requests.slice(from);
      expect(recorded.every((request) => request.namespace === "kube-system")).toBe(true);
      expect(recorded.every((request) => request.status === 200 || request.status === 101)).toBe(true);
      // Each WebSocket upgrade was authorized for get, then create (Kubernetes 1.35).
      for (const request of recorded.filter((candidate) => candidate.subresource !== undefined)) {
        expect(request.authorizedVerbs).toEqual(["get", "create"]);
      }
      expect(authorizer.decisions.length).toBeGreaterThan(0);
      expect(authorizer.decisions.filter((decision) => !decision.allowed)).toEqual([]);
    });
  }

  it("fails with the API server's refusal when the Role lacks create on the subresources (Kubernetes 1.35)", async () => {
    authorizer = rbacAuthorizerFromManifest(manifest.replace('verbs: ["get", "create"]', 'verbs: ["get"]'));
    const attempt = resolveTarget(dependencies(), { cluster: "kubeadm-exec" });
    await expect(attempt).rejects.toThrow(KubernetesAccessDeniedError);
    await expect(attempt).rejects.toThrow(
      /cannot create resource "pods\/exec" in API group "" in the namespace "kube-system"/,
    );
  });

  it("fails with an access-denied error when the Role lacks list on pods", async () => {
    authorizer = rbacAuthorizerFromManifest(manifest.replace('verbs: ["get", "list"]', 'verbs: ["get"]'));
    const attempt = resolveTarget(dependencies(), { cluster: "kubeadm-grpc" });
    await expect(attempt).rejects.toThrow(KubernetesAccessDeniedError);
    await expect(attempt).rejects.toThrow(
      /cannot list resource "pods" in API group "" in the namespace "kube-system"/,
    );
  });
});

// The restore's pod executor under its own Role (deploy/rbac/etcd-backup-restore-rbac.yaml), bound to a
// group of its own: it creates the Secret and one pinned pod per member, and removes them, and nothing else.
describe("the pod executor under the restore's RBAC", () => {
  const restoreManifestPath = join(import.meta.dirname, "../../deploy/rbac/etcd-backup-restore-rbac.yaml");
  const restoreTargets = parseTargetsFile({
    prefix,
    targets: [
      {
        name: "kubeadm-pods",
        schedule: "rate(1 hour)",
        access: { kind: "kubeconfig", secretArn },
        restore: {
          executor: "pod",
          toolPath: "/usr/local/bin/etcdutl",
          members: ["cp-0", "cp-1", "cp-2"].map((name, index) => ({
            name,
            nodeName: `node-${index}`,
            clientUrl: `https://10.0.0.${index + 1}:2379`,
            peerUrl: `https://10.0.0.${index + 1}:2380`,
          })),
        },
      },
    ],
  });
  const agents = ["cp-0", "cp-1", "cp-2"].map((member) => ({
    member,
    instanceId: member,
    commands: [],
    planUrl: `https://s3.example/${member}/plan.txt?X-Amz-Signature=plan-${member}`,
    statusUrl: `https://s3.example/${member}/status.json?X-Amz-Signature=status-${member}`,
  }));
  const input = { cluster: "kubeadm-pods", snapshotId: "s-1" };
  const restoreId = "restore-2026-11-24";
  let restoreManifest: string;
  let restoreAuthorizer: RbacAuthorizer;
  let api: KubeApiStandIn;

  beforeAll(async () => {
    restoreManifest = await readFile(restoreManifestPath, "utf8");
    restoreAuthorizer = rbacAuthorizerFromManifest(restoreManifest);
    api = await startKubeApiStandIn({
      auth: {
        bearerTokens: [
          { token: "restore-token", user: "etcd-backup-restore", groups: ["etcd-backup-restore"] },
        ],
      },
      authorize: (attributes) => restoreAuthorizer.authorize(attributes),
    });
  });

  afterAll(async () => {
    await api?.stop();
  });

  function restoreDependencies(): RestoreDependencies {
    return {
      ...dependencies(),
      loadTargets: async () => restoreTargets,
      loadAgentScript: async () => "#!/usr/bin/env bash\necho agent\n",
      loadKubeConfig: (target: Target) => {
        if (target.access.kind === "direct") throw new Error("direct");
        return loadKubeConfigForAccess(target.access, {
          readSecret: async () => readFile(api.kubeconfigPath, "utf8"),
        });
      },
    } as unknown as RestoreDependencies;
  }

  it("creates the Secret, then one pod per member pinned to its node, with no URL in any pod", async () => {
    const from = api.requests.length;
    const started = await startAgentPods(restoreDependencies(), input, restoreId, agents);
    expect(started.pods.map((pod) => [pod.member, pod.nodeName])).toEqual([
      ["cp-0", "node-0"],
      ["cp-1", "node-1"],
      ["cp-2", "node-2"],
    ]);
    expect(
      api.requests.slice(from).map((request) => `${request.verb} ${request.resource} ${request.status}`),
    ).toEqual(["create secrets 201", "create pods 201", "create pods 201", "create pods 201"]);
    expect(api.requests.slice(from).every((request) => request.namespace === "kube-system")).toBe(true);
    const created = api.created.filter((object) => object.resource === "pods");
    expect(created.map((object) => (object.object.spec as { nodeName: string }).nodeName)).toEqual([
      "node-0",
      "node-1",
      "node-2",
    ]);
    for (const pod of created) expect(JSON.stringify(pod.object)).not.toContain("X-Amz-Signature");
    const secret = api.created.find((object) => object.resource === "secrets");
    expect(secret?.name).toBe(agentSecretName(restoreId));
    expect(JSON.stringify(secret?.object)).toContain("X-Amz-Signature=plan-cp-2");
    expect(restoreAuthorizer.decisions.filter((decision) => !decision.allowed)).toEqual([]);
  });

  it("goes on from an earlier attempt: objects that exist already are left as they are", async () => {
    const from = api.requests.length;
    await startAgentPods(restoreDependencies(), input, restoreId, agents);
    expect(api.requests.slice(from).map((request) => request.status)).toEqual([409, 409, 409, 409]);
  });

  it("removes the pods and the Secret, saying first what became of each pod; a second removal finds nothing", async () => {
    const from = api.requests.length;
    const removed = await removeAgentPods(restoreDependencies(), input, restoreId, { describePods: true });
    expect(removed).toEqual({
      removed: [0, 1, 2]
        .map((index) => `pod/${agentPodName(restoreId, index)}`)
        .concat(`secret/${agentSecretName(restoreId)}`),
      leftovers: [],
      // The stand-in leaves created pods Pending on their nodes, their containers being created.
      agentPods: ["cp-0", "cp-1", "cp-2"].map(
        (member, index) => `${agentPodName(restoreId, index)} (${member}): Pending — ContainerCreating`,
      ),
    });
    expect(
      api.requests.slice(from).map((request) => `${request.verb} ${request.resource} ${request.status}`),
    ).toEqual([
      ...[0, 1, 2].flatMap(() => ["get pods 200", "list events 200", "delete pods 200"]),
      "delete secrets 200",
    ]);
    expect(restoreAuthorizer.decisions.filter((decision) => !decision.allowed)).toEqual([]);
    // The restored API server may not know them at all: not found is nothing left.
    expect(await removeAgentPods(restoreDependencies(), input, restoreId, { describePods: true })).toEqual({
      removed: [],
      leftovers: [],
      agentPods: ["cp-0", "cp-1", "cp-2"].map(
        (member, index) => `${agentPodName(restoreId, index)} (${member}): not found`,
      ),
    });
  });

  it("is refused without the Role's create, with the API server's message, before any pod exists", async () => {
    restoreAuthorizer = rbacAuthorizerFromManifest(
      restoreManifest.replace('verbs: ["create", "delete"]', 'verbs: ["delete"]'),
    );
    const attempt = startAgentPods(restoreDependencies(), input, "restore-refused", agents);
    await expect(attempt).rejects.toThrow(KubernetesAccessDeniedError);
    await expect(attempt).rejects.toThrow(
      /cannot create resource "secrets" in API group "" in the namespace "kube-system"/,
    );
    expect(
      api.created.filter((object) => object.name.startsWith(agentSecretName("restore-refused"))),
    ).toEqual([]);
  });

  it("reports what it could not remove without the Role's delete, and does not fail", async () => {
    restoreAuthorizer = rbacAuthorizerFromManifest(restoreManifest);
    await startAgentPods(restoreDependencies(), input, "restore-kept", agents);
    restoreAuthorizer = rbacAuthorizerFromManifest(
      restoreManifest.replace('verbs: ["create", "delete"]', 'verbs: ["create"]'),
    );
    // After a success nothing is read first: the removal alone.
    const from = api.requests.length;
    const removed = await removeAgentPods(restoreDependencies(), input, "restore-kept");
    expect(removed.agentPods).toEqual([]);
    expect(api.requests.slice(from).every((request) => request.verb === "delete")).toBe(true);
    expect(removed.removed).toEqual([]);
    expect(removed.leftovers).toHaveLength(4);
    expect(removed.leftovers[0]).toMatch(/cannot delete resource "pods"/);
  });

  it("stops asking an API it cannot reach after the first attempt, and reports every object as left", async () => {
    // An API server whose connections are reset at once: each request would otherwise be tried.
    let connections = 0;
    const resetting = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => resetting.listen(0, "127.0.0.1", resolve));
    const { port } = resetting.address() as AddressInfo;
    const kubeconfig = (await readFile(api.kubeconfigPath, "utf8")).replace(
      api.url,
      `https://127.0.0.1:${port}`,
    );
    try {
      const removed = await removeAgentPods(
        {
          ...restoreDependencies(),
          loadKubeConfig: (target: Target) =>
            loadKubeConfigForAccess(target.access as Exclude<Target["access"], { kind: "direct" }>, {
              readSecret: async () => kubeconfig,
            }),
        } as RestoreDependencies,
        input,
        "restore-unreachable",
        { describePods: true },
      );
      expect(connections).toBe(1);
      expect(removed.removed).toEqual([]);
      expect(removed.leftovers).toHaveLength(4);
      expect(removed.agentPods).toHaveLength(3);
      for (const line of [...removed.leftovers, ...removed.agentPods]) {
        expect(line).toMatch(/cannot be reached/);
      }
    } finally {
      resetting.close();
    }
  });

  it("is not the backup's: the backup group may not create pods, the restore group may not exec", () => {
    const backup = rbacAuthorizerFromManifest(manifest);
    const restore = rbacAuthorizerFromManifest(restoreManifest);
    const attributes = {
      resourceRequest: true,
      path: "/api/v1/namespaces/kube-system/pods",
      namespace: "kube-system",
    };
    expect(
      backup.authorize({
        ...attributes,
        user: "etcd-backup",
        groups: ["etcd-backup"],
        verb: "create",
        resource: "pods",
      }),
    ).toBe(false);
    expect(
      restore.authorize({
        ...attributes,
        user: "etcd-backup-restore",
        groups: ["etcd-backup-restore"],
        verb: "create",
        resource: "pods",
        subresource: "exec",
      }),
    ).toBe(false);
  });
});
