// Authentication, discovery and the choice of a member through the stand-in Kubernetes API server, with
// a real three-member etcd behind its pods; and `etcd-backup snapshot --kubeconfig` end to end into
// s3rver, whose figures must equal those of a direct `etcdctl snapshot save`.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BackupDependencies, silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { openMemberSource } from "../../lambdas/core/backup/member-source.js";
import { resolveTarget } from "../../lambdas/core/backup/resolve-target-step.js";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import {
  EtcdUnavailableError,
  InvalidInputError,
  KubernetesAccessDeniedError,
  KubernetesApiError,
} from "../../lambdas/core/errors.js";
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import { discoverEtcdMembers, kubeadmMembers } from "../../lambdas/core/kube/discover-members.js";
import { kubeConfigFromFile } from "../../lambdas/core/kube/kube-config.js";
import { chooseKubernetesMember, readMemberPod } from "../../lambdas/core/kube/kubernetes-member-source.js";
import { type EtcdCluster, startEtcdCluster } from "../support/etcd-cluster.js";
import { createEtcdWriter } from "../support/etcd-writer.js";
import { findFreePort } from "../support/free-port.js";
import {
  type KubeApiStandIn,
  type StandInPod,
  startKubeApiStandIn,
} from "../support/kube-api-server/index.js";
import { type LocalS3, startLocalS3 } from "../support/s3-server.js";
import { makeTempDir } from "../support/temp-dir.js";

const run = promisify(execFile);
const cli = join(import.meta.dirname, "../../bin/etcd-backup.mjs");
const backupToken = "backup-token";

let etcd: EtcdCluster;
let standIn: KubeApiStandIn;
let s3: LocalS3;
let work: { path: string; remove: () => Promise<void> };

/** A kubeadm-shaped static pod whose etcd is one member of the real local cluster. */
function kubeadmEtcdPod(index: number, extra: Partial<StandInPod> = {}): StandInPod {
  const member = etcd.members[index];
  if (!member) throw new Error(`no member ${index}`);
  return {
    name: `etcd-cp-${index}`,
    namespace: "kube-system",
    nodeName: `cp-${index}`,
    labels: { component: "etcd", tier: "control-plane" },
    hostNetwork: true,
    containers: [
      {
        name: "etcd",
        image: "registry.k8s.io/etcd:3.5.16-0",
        command: [
          "etcd",
          `--name=${member.name}`,
          `--advertise-client-urls=${member.clientUrl}`,
          `--listen-client-urls=${member.clientUrl}`,
          `--data-dir=${member.dataDir}`,
        ],
      },
    ],
    ...extra,
  };
}

async function etcdBackup(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return etcdBackupWith(process.env, ...args);
}

async function etcdBackupWith(
  env: NodeJS.ProcessEnv,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], {
      maxBuffer: 16 * 1024 * 1024,
      env,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

beforeAll(async () => {
  [etcd, s3, work] = await Promise.all([
    startEtcdCluster({ members: 3 }),
    startLocalS3(),
    makeTempDir("kube"),
  ]);
  await createEtcdWriter(etcd).putMany(
    Array.from({ length: 250 }, (_, index) => [`/registry/secrets/default/s-${index}`, randomBytes(400)]),
  );
  standIn = await startKubeApiStandIn({
    pods: [
      kubeadmEtcdPod(0),
      kubeadmEtcdPod(1),
      kubeadmEtcdPod(2),
      // A job's pod that matches the selector but is not a member.
      {
        name: "etcd-defrag-28912345",
        namespace: "kube-system",
        labels: { component: "etcd" },
        containers: [{ name: "defrag" }],
        phase: "Succeeded",
      },
      { ...kubeadmEtcdPod(0), name: "etcd-a", namespace: "not-ready", ready: false },
      { ...kubeadmEtcdPod(1), name: "etcd-b", namespace: "not-ready", phase: "Pending", nodeName: "" },
      {
        name: "etcd-0",
        namespace: "renamed",
        labels: { component: "etcd" },
        containers: [{ name: "etcd-server" }, { name: "metrics" }],
      },
    ],
    auth: {
      bearerTokens: [{ token: backupToken, user: "etcd-backup", groups: ["etcd-backup"] }],
      clientCertificates: true,
    },
  });
});

afterAll(async () => {
  await standIn?.stop();
  await Promise.all([etcd?.stop(), s3?.stop(), work?.remove()]);
});

describe("authentication", () => {
  it("discovers the members with the kubeconfig's bearer token", async () => {
    const config = await kubeConfigFromFile(standIn.kubeconfigPath);
    const discovered = await discoverEtcdMembers(config, kubeadmMembers);
    expect(discovered.members.map((member) => member.podName)).toEqual([
      "etcd-cp-0",
      "etcd-cp-1",
      "etcd-cp-2",
    ]);
    expect(discovered.members.every((member) => member.ready)).toBe(true);
    expect(discovered.members[1]).toMatchObject({
      nodeName: "cp-1",
      memberName: "member-1",
      localClientUrl: etcd.members[1]?.clientUrl,
      dataDir: etcd.members[1]?.dataDir,
    });
    expect(discovered.skipped).toEqual([
      {
        pod: "kube-system/etcd-defrag-28912345",
        reason:
          'pod kube-system/etcd-defrag-28912345 has no container "etcd" (it has: defrag): set etcd.container',
      },
    ]);
    const list = standIn.requests.at(-1);
    expect(list).toMatchObject({
      verb: "list",
      resource: "pods",
      namespace: "kube-system",
      user: "etcd-backup",
    });
    expect(list?.query.labelSelector).toEqual(["component=etcd"]);
  });

  it("discovers the members with a client certificate", async () => {
    const config = await kubeConfigFromFile(
      await standIn.writeKubeconfig({ clientCertificate: true }),
      "stand-in",
    );
    const discovered = await discoverEtcdMembers(config, kubeadmMembers);
    expect(discovered.members).toHaveLength(3);
    expect(standIn.requests.at(-1)).toMatchObject({ user: "etcd-backup", status: 200 });
  });

  it("reports a wrong token as a 401 refusal naming the API server", async () => {
    const config = await kubeConfigFromFile(await standIn.writeKubeconfig({ token: "wrong-token" }));
    const attempt = discoverEtcdMembers(config, kubeadmMembers);
    await expect(attempt).rejects.toThrow(KubernetesAccessDeniedError);
    await expect(attempt).rejects.toThrow(
      `cannot list etcd pods (selector "component=etcd" in namespace "kube-system"): the Kubernetes API at ${standIn.url} did not accept the credentials (401 Unauthorized)`,
    );
  });

  it("reports an API server that does not answer as transient", async () => {
    const config = await kubeConfigFromFile(standIn.kubeconfigPath);
    const port = await findFreePort();
    const cluster = config.getCurrentCluster();
    if (!cluster) throw new Error("no cluster");
    config.clusters = [{ ...cluster, server: `https://127.0.0.1:${port}` }];
    const attempt = discoverEtcdMembers(config, kubeadmMembers);
    await expect(attempt).rejects.toThrow(KubernetesApiError);
    await expect(attempt).rejects.toThrow(/cannot be reached: .*ECONNREFUSED/);
  });
});

describe("discovery errors", () => {
  it("no pods: names the selector and namespace, and says that managed control planes such as EKS expose no etcd", async () => {
    const config = await kubeConfigFromFile(standIn.kubeconfigPath);
    const attempt = discoverEtcdMembers(config, {
      namespace: "kube-system",
      selector: "app.kubernetes.io/name=etcd",
      container: "etcd",
    });
    await expect(attempt).rejects.toThrow(InvalidInputError);
    await expect(attempt).rejects.toThrow(
      /^no pods match selector "app\.kubernetes\.io\/name=etcd" in namespace "kube-system" at https:\/\/127\.0\.0\.1:\d+: .*Managed control planes such as EKS.*no etcd pod/,
    );
  });

  it("pods not ready: says why for each, and is transient", async () => {
    const config = await kubeConfigFromFile(standIn.kubeconfigPath);
    const discovered = await discoverEtcdMembers(config, { ...kubeadmMembers, namespace: "not-ready" });
    const attempt = chooseKubernetesMember(config, discovered, { source: "exec" });
    await expect(attempt).rejects.toThrow(EtcdUnavailableError);
    await expect(attempt).rejects.toThrow(
      "no etcd pod is ready: not-ready/etcd-a container etcd is not ready; not-ready/etcd-b is Pending",
    );
  });

  it("container missing: names the containers the pods have", async () => {
    const config = await kubeConfigFromFile(standIn.kubeconfigPath);
    const attempt = discoverEtcdMembers(config, { ...kubeadmMembers, namespace: "renamed" });
    await expect(attempt).rejects.toThrow(InvalidInputError);
    await expect(attempt).rejects.toThrow(
      'no pod matching selector "component=etcd" in namespace "renamed" has a container "etcd": pod renamed/etcd-0 has no container "etcd" (it has: etcd-server, metrics)',
    );
  });
});

describe("reading the chosen pod again", () => {
  it("reads the member from its pod, and reports a pod that has gone as transient", async () => {
    const config = await kubeConfigFromFile(standIn.kubeconfigPath);
    const member = await readMemberPod(config, {
      namespace: "kube-system",
      name: "etcd-cp-2",
      container: "etcd",
    });
    expect(member).toMatchObject({ podName: "etcd-cp-2", memberName: "member-2", ready: true });
    const attempt = readMemberPod(config, { namespace: "kube-system", name: "etcd-cp-9", container: "etcd" });
    await expect(attempt).rejects.toThrow(EtcdUnavailableError);
    await expect(attempt).rejects.toThrow("etcd pod kube-system/etcd-cp-9 no longer exists");
  });
});

describe("choosing a member through its source", () => {
  for (const source of ["exec", "grpc"] as const) {
    it(`${source}: asks every ready member for its status and chooses a follower`, async () => {
      const config = await kubeConfigFromFile(standIn.kubeconfigPath);
      const discovered = await discoverEtcdMembers(config, kubeadmMembers);
      const before = standIn.requests.length;
      const chosen = await chooseKubernetesMember(config, discovered, { source });
      chosen.source.close();
      expect(chosen.isLeader).toBe(false);
      expect(chosen.status.memberId).not.toBe(chosen.status.leaderId);
      expect(chosen.status.revision).toBeGreaterThan(1);
      const subresource = source === "exec" ? "exec" : "portforward";
      const streams = standIn.requests.slice(before).filter((request) => request.subresource === subresource);
      expect(streams.map((request) => request.name).sort()).toEqual(["etcd-cp-0", "etcd-cp-1", "etcd-cp-2"]);
      expect(streams.every((request) => request.status === 101)).toBe(true);
    });
  }
});

describe("the backup's ResolveTarget through Kubernetes", () => {
  for (const source of ["exec", "grpc"] as const) {
    it(`${source}: names the other ready members as peers, each of which answers HashKV through its pod`, async () => {
      const targets = parseTargetsFile({
        prefix: "etcd-backup",
        targets: [
          {
            name: "kubeadm",
            schedule: "rate(1 hour)",
            access: { kind: "kubeconfig", secretArn: "arn:aws:secretsmanager:us-east-1:1:secret:k" },
            etcd: { source },
          },
        ],
      });
      const dependencies = {
        loadTargets: async () => targets,
        loadEtcdTls: async () => undefined,
        loadKubeConfig: () => kubeConfigFromFile(standIn.kubeconfigPath),
        reporter: silentReporter,
        now: () => new Date(),
      } as unknown as BackupDependencies;
      const resolved = await resolveTarget(dependencies, { cluster: "kubeadm" });
      const peers = resolved.peers ?? [];
      expect(peers.map((peer) => peer.pod?.name).sort()).toEqual(
        ["etcd-cp-0", "etcd-cp-1", "etcd-cp-2"].filter((name) => name !== resolved.member.pod?.name),
      );
      expect(peers.every((peer) => peer.source === source && peer.pod?.namespace === "kube-system")).toBe(
        true,
      );
      const target = targets.targets[0] as (typeof targets.targets)[number];
      for (const peer of peers) {
        const index = Number(peer.pod?.name.at(-1));
        const member = await openMemberSource(dependencies, target, peer);
        const direct = createEtcdClient({ endpoint: etcd.members[index]?.clientUrl as string });
        try {
          const revision = (await direct.status()).revision;
          const { hash, compactRevision } = await direct.hashKV(revision);
          expect(await member.hashKV(revision)).toEqual(
            source === "exec"
              ? { hash, compactRevision }
              : expect.objectContaining({ hash, compactRevision }),
          );
        } finally {
          member.close();
          direct.close();
        }
      }
    });
  }
});

describe("etcd-backup snapshot through Kubernetes", () => {
  for (const source of ["exec", "grpc"] as const) {
    it(`--kubeconfig --source ${source} streams a verified snapshot into S3 whose figures equal a direct etcdctl snapshot save`, async () => {
      const snapshot = await etcdBackup(
        "snapshot",
        "--kubeconfig",
        standIn.kubeconfigPath,
        "--source",
        source,
        "--to",
        `s3://${s3.bucket}/kube-${source}`,
        "--s3-endpoint",
        s3.endpoint,
        "--cluster",
        "kubeadm",
        "--json",
      );
      expect(snapshot.stderr).toBe("");
      expect(snapshot.code).toBe(0);
      const result = JSON.parse(snapshot.stdout);
      expect(result.location).toMatch(new RegExp(`^s3://${s3.bucket}/kube-${source}/kubeadm/`));
      expect(result.source).toMatch(
        source === "exec"
          ? /^pod kube-system\/etcd-cp-\d .*exec/
          : /^pod kube-system\/etcd-cp-\d .*port-forward/,
      );

      const direct = join(work.path, `direct-${source}.db`);
      await run("etcdctl", [...etcd.etcdctlArgs(), "snapshot", "save", direct]);
      const { stdout } = await run("etcdctl", ["snapshot", "status", direct, "-w", "json"]);
      const reference = JSON.parse(stdout) as { hash: number; revision: number; totalKey: number };
      const verify = await etcdBackup("verify", result.location, "--s3-endpoint", s3.endpoint, "--json");
      expect(verify.code).toBe(0);
      const stored = JSON.parse(verify.stdout);
      // Nothing writes between the two snapshots: the same revision, so the same figures.
      expect({ hash: stored.hash, revision: stored.revision, totalKey: stored.totalKey }).toEqual({
        hash: reference.hash,
        revision: reference.revision,
        totalKey: reference.totalKey,
      });
      expect(stored.sha256).toBe(result.sha256);
      expect(result.liveKeyCount).toBe(250);
      // The member it was read from, then the other two pods through the same kind of source, answer
      // the snapshot's HashKV.
      expect(result.memberHash).toMatchObject({ outcome: "matched", revision: result.revision });
      const agreeing = result.memberHash.agreeing as string[];
      expect(agreeing).toHaveLength(3);
      for (const pod of ["etcd-cp-0", "etcd-cp-1", "etcd-cp-2"]) {
        expect(agreeing.filter((member) => member.startsWith(`pod kube-system/${pod} `))).toHaveLength(1);
      }
    });
  }

  it("needs exactly one way to reach etcd, and --region with --eks-cluster", async () => {
    const none = await etcdBackup("snapshot", "--to", join(work.path, "x.db"));
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/give exactly one of --endpoints .*--kubeconfig or --eks-cluster/);
    const both = await etcdBackup(
      "snapshot",
      "--endpoints",
      "http://127.0.0.1:1",
      "--kubeconfig",
      standIn.kubeconfigPath,
      "--to",
      join(work.path, "x.db"),
    );
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/give exactly one of --endpoints .*--kubeconfig or --eks-cluster/);
    const { AWS_REGION: _region, AWS_DEFAULT_REGION: _defaultRegion, ...withoutRegion } = process.env;
    const noRegion = await etcdBackupWith(
      withoutRegion,
      "snapshot",
      "--eks-cluster",
      "prod",
      "--to",
      join(work.path, "x.db"),
    );
    expect(noRegion.code).toBe(2);
    expect(noRegion.stderr).toContain("--eks-cluster needs --region (or AWS_REGION)");
    const wrongSource = await etcdBackup(
      "snapshot",
      "--kubeconfig",
      standIn.kubeconfigPath,
      "--source",
      "ssh",
      "--to",
      "x",
    );
    expect(wrongSource.code).toBe(2);
    const bitnamiWithoutNamespace = await etcdBackup(
      "snapshot",
      "--kubeconfig",
      standIn.kubeconfigPath,
      "--preset",
      "bitnami",
      "--to",
      join(work.path, "x.db"),
    );
    expect(bitnamiWithoutNamespace.code).toBe(2);
    expect(bitnamiWithoutNamespace.stderr).toContain(
      "--preset bitnami: the bitnami preset needs the namespace of the chart's release",
    );
  });

  it("reports no etcd pods in one line, naming the selector", async () => {
    const failed = await etcdBackup(
      "snapshot",
      "--kubeconfig",
      standIn.kubeconfigPath,
      "--namespace",
      "storage",
      "--selector",
      "app.kubernetes.io/name=etcd",
      "--to",
      join(work.path, "never.db"),
    );
    expect(failed.code).toBe(2);
    expect(failed.stderr.trim().split("\n")).toHaveLength(1);
    expect(failed.stderr).toMatch(
      /^etcd-backup: InvalidInputError: no pods match selector "app.kubernetes.io\/name=etcd" in namespace "storage"/,
    );
  });
});
