// The node-level restore agent against real etcd run as static pods by the local supervisor, with its plan
// and status in s3rver behind presigned URLs. The test plays the state machine: it writes each phase into
// the plans and waits at the barrier until every agent reports it done.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  standInApiServerCommand,
  writeEtcdManifest,
  writeStandInApiServerManifest,
  writeStandInComponentManifest,
} from "../../cli/local/static-pod-manifests.js";
import type { RestoreAgentStatus, RestorePlan } from "../../lambdas/core/restore/restore-plan.js";
import { stagedToolKey } from "../../lambdas/core/restore/restore-plans-step.js";
import { presignWithClient } from "../../lambdas/core/store/presign.js";
import { findFreePort } from "../support/free-port.js";
import { type RestoreAgents, startRestoreAgents } from "../support/restore-agents.js";
import { type LocalS3, startLocalS3 } from "../support/s3-server.js";
import {
  apiServerManifestName,
  controllerManagerManifestName,
  etcdManifestName,
  type StaticPodEtcd,
  type StaticPodNode,
  schedulerManifestName,
  startStaticPodEtcd,
} from "../support/static-pod-etcd.js";
import { makeTempDir } from "../support/temp-dir.js";
import { createTestCertificates, type TestCertificates } from "../support/test-certificates.js";

interface UploadedSnapshot {
  key: string;
  bytes: number;
  sha256: string;
  revision: number;
}

async function snapshotToS3(etcd: StaticPodEtcd, s3: LocalS3, name: string): Promise<UploadedSnapshot> {
  const file = join(etcd.baseDir, `${name}.db`);
  await etcd.etcdctl(["snapshot", "save", file], 0);
  const content = await readFile(file);
  const status = JSON.parse(await etcd.etcdctl(["snapshot", "status", "-w", "json", file])) as {
    revision: number;
  };
  const key = `snapshots/${name}.db`;
  await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: content }));
  return {
    key,
    bytes: content.length,
    sha256: createHash("sha256")
      .update(content.subarray(0, content.length - 32))
      .digest("hex"),
    revision: status.revision,
  };
}

async function planFor(
  s3: LocalS3,
  etcd: StaticPodEtcd,
  node: StaticPodNode,
  snapshot: UploadedSnapshot,
  restoreId: string,
): Promise<RestorePlan> {
  return {
    restoreId,
    cluster: "local-static-pods",
    phase: "prepare",
    snapshot: {
      url: await presignWithClient(s3.client, {
        bucket: s3.bucket,
        key: snapshot.key,
        method: "GET",
        expiresInSeconds: 3600,
        endpoint: s3.endpoint,
      }),
      sha256: snapshot.sha256,
      bytes: snapshot.bytes,
      revision: snapshot.revision,
    },
    member: {
      name: node.memberName,
      dataDir: node.dataDir,
      manifestDir: node.manifestDir,
      parkedManifestDir: node.parkedManifestDir,
      etcdManifest: etcdManifestName,
      apiServerManifest: apiServerManifestName,
      clientUrl: node.clientUrl,
      peerUrl: node.peerUrl,
      apiServerReadyUrl: node.apiServerReadyUrl,
      restartManifests: [schedulerManifestName, controllerManagerManifestName],
    },
    initialCluster: etcd.initialCluster,
    initialClusterToken: `restore-${restoreId}`,
    restoreTool: "etcdctl",
    minimumFreeBytes: snapshot.bytes * 3,
    stopTimeoutSeconds: 20,
    startTimeoutSeconds: 30,
  };
}

/** A restore tool in the bucket, as `toolObject` stages it: etcdctl behind a script that logs its calls. */
async function stageRestoreTool(s3: LocalS3, etcd: StaticPodEtcd, name: string) {
  const realTool = (await promisify(execFile)("bash", ["-c", "command -v etcdctl"])).stdout.trim();
  const invocations = join(etcd.baseDir, `${name}.invocations`);
  const content = Buffer.from(`#!/bin/sh\nprintf '%s\\n' "$*" >>'${invocations}'\nexec '${realTool}' "$@"\n`);
  const key = stagedToolKey("etcd-backup", name);
  await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: content }));
  const url = await presignWithClient(s3.client, {
    bucket: s3.bucket,
    key,
    method: "GET",
    expiresInSeconds: 3600,
    endpoint: s3.endpoint,
  });
  return { tool: { url, sha256: createHash("sha256").update(content).digest("hex") }, invocations };
}

/** Puts keys in one transaction through etcd's JSON gateway: one etcdctl process per key is slow. */
async function putKeys(etcd: StaticPodEtcd, prefix: string, count: number, value: (index: number) => string) {
  const base64 = (text: string) => Buffer.from(text).toString("base64");
  const success = Array.from({ length: count }, (_unused, index) => ({
    requestPut: { key: base64(`${prefix}${index}`), value: base64(value(index)) },
  }));
  const response = await fetch(`${etcd.nodes[0]?.clientUrl}/v3/kv/txn`, {
    method: "POST",
    body: JSON.stringify({ success }),
  });
  expect(response.status).toBe(200);
}

async function readKeys(etcd: StaticPodEtcd, prefix: string, memberIndex = 0): Promise<Map<string, string>> {
  const lines = (await etcd.etcdctl(["get", prefix, "--prefix"], memberIndex)).split("\n").filter(Boolean);
  const keys = new Map<string, string>();
  for (let index = 0; index + 1 < lines.length; index += 2)
    keys.set(lines[index] as string, lines[index + 1] as string);
  return keys;
}

/** Cluster id, member ids and each member's leader, read as text: the ids do not fit a JS number. */
async function clusterShape(etcd: StaticPodEtcd) {
  const text = await etcd.etcdctl(["endpoint", "status", "--cluster", "-w", "json"]);
  const clusterIds = [...text.matchAll(/"cluster_id":(\d+)/g)].map((match) => match[1]);
  const memberIds = [...text.matchAll(/"member_id":(\d+)/g)].map((match) => match[1]);
  const leaders = [...text.matchAll(/"leader":(\d+)/g)].map((match) => match[1]);
  return { clusterIds: new Set(clusterIds), memberIds, leaders: new Set(leaders) };
}

/** No status and no agent log holds a signature: of the launch URLs, nor of any URL a plan renewed. */
function expectNoSecrets(agents: RestoreAgents, statusTexts: string[]) {
  const signatures = agents.signedUrls.map(
    (url) => new URL(url).searchParams.get("X-Amz-Signature") as string,
  );
  for (const text of [...statusTexts, ...agents.agents.map((agent) => agent.stderr())]) {
    expect(text).not.toContain("X-Amz-Signature");
    for (const signature of signatures) expect(text).not.toContain(signature);
  }
}

async function fingerprint(directory: string): Promise<string[]> {
  const entries: string[] = [];
  const walk = async (path: string) => {
    for (const entry of (await readdir(path, { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) await walk(full);
      else {
        const hash = createHash("sha256")
          .update(await readFile(full))
          .digest("hex");
        entries.push(`${full.slice(directory.length)} ${(await stat(full)).size} ${hash}`);
      }
    }
  };
  await walk(directory);
  return entries;
}

/** How many times the supervisor has started each pod on the node (its `starts` count resets with the manifest). */
function startedCount(etcd: StaticPodEtcd, node: StaticPodNode, pod: string): number {
  return etcd.events.filter(
    (event) => event.node === node.name && event.pod === pod && event.type === "started",
  ).length;
}

function restartCounts(etcd: StaticPodEtcd, node: StaticPodNode) {
  return {
    scheduler: startedCount(etcd, node, "kube-scheduler"),
    controllerManager: startedCount(etcd, node, "kube-controller-manager"),
  };
}

/** The agents' exit codes, or "still running" when one has not ended within `ms`. */
async function exitCodesWithin(agents: RestoreAgents, ms: number) {
  return Promise.race([
    Promise.all(agents.agents.map((agent) => agent.exitCode)),
    sleep(ms).then(() => "still running"),
  ]);
}

/**
 * A failed agent does not end: it stays for the state machine's answer to its failure. Given `answer`
 * (rollback, or abort before anything stopped), it runs it and only then ends, with exit code 0.
 */
async function expectAgentsToAnswer(agents: RestoreAgents, answer: "rollback" | "abort") {
  // Long enough for an agent that ended on its failure (as it used to) to be seen gone.
  await sleep(1000);
  expect(agents.agents.map((agent) => agent.child.exitCode)).toEqual(agents.agents.map(() => null));
  const outcome = await agents.advance(answer);
  expect(outcome.failed, messages(outcome.statuses)).toBe(false);
  expect(await exitCodesWithin(agents, 10_000)).toEqual(agents.agents.map(() => 0));
  return outcome;
}

function messages(statuses: RestoreAgentStatus[]): string {
  return statuses.map((status) => `${status.member}: ${status.state} ${status.message}`).join("\n");
}

describe("restore agent on a three-member etcd run as static pods", () => {
  let s3: LocalS3;
  let etcd: StaticPodEtcd;
  let snapshot: UploadedSnapshot;
  let originalClusterIds: Set<string | undefined>;
  const restoreId = "r-three-members";

  beforeAll(async () => {
    [s3, etcd] = await Promise.all([startLocalS3(), startStaticPodEtcd({ members: 3 })]);
    await putKeys(etcd, "/before/", 20, (index) => `value-${index}`);
    snapshot = await snapshotToS3(etcd, s3, "three-members");
    await putKeys(etcd, "/after/", 5, (index) => `late-${index}`);
    await etcd.etcdctl(["put", "/before/0", "changed-after-the-snapshot"]);
    originalClusterIds = (await clusterShape(etcd)).clusterIds;
  });

  afterAll(async () => {
    await etcd?.stop();
    await s3?.stop();
  });

  it("stops, restores and restarts every member through the barriers, keeping the old data dirs", async () => {
    const plans = await Promise.all(etcd.nodes.map((node) => planFor(s3, etcd, node, snapshot, restoreId)));
    let agents = await startRestoreAgents({ s3, plans, initialPhase: "prepare" });
    try {
      const prepared = await agents.waitForPhase("prepare");
      expect(prepared.failed, messages(prepared.statuses)).toBe(false);
      for (const status of prepared.statuses) {
        expect(status.freeBytes).toBeGreaterThan(snapshot.bytes * 3);
        expect(status.toolVersion).toMatch(/^etcdctl 3\.4\./);
      }

      const stopsFrom = etcd.events.length;
      const apiServersStopped = await agents.advance("stop-apiserver");
      expect(apiServersStopped.failed, messages(apiServersStopped.statuses)).toBe(false);
      for (const node of etcd.nodes) {
        const status = apiServersStopped.statuses.find((entry) => entry.member === node.memberName);
        // The agent saw its own node's stand-in by its command line, and the stand-in's port close.
        expect(status?.message).toMatch(
          /^kube-apiserver stopped: its processes have exited \(pid \d+\); its port is closed$/,
        );
        expect(etcd.supervisor.running(node.name, "kube-apiserver")).toBe(false);
        expect(etcd.supervisor.running(node.name, "etcd")).toBe(true);
        expect(existsSync(join(node.manifestDir, etcdManifestName))).toBe(true);
      }

      const stopped = await agents.advance("stop");
      expect(stopped.failed, messages(stopped.statuses)).toBe(false);
      for (const node of etcd.nodes) {
        expect(etcd.supervisor.running(node.name, "etcd")).toBe(false);
        expect(etcd.supervisor.running(node.name, "kube-apiserver")).toBe(false);
        expect(existsSync(join(node.parkedManifestDir, etcdManifestName))).toBe(true);
      }
      // The barrier between the two: every API server had exited before any etcd member began to stop.
      const stops = etcd.events.slice(stopsFrom);
      const apiServerExits = stops.flatMap((event, index) =>
        event.pod === "kube-apiserver" && event.type === "exited" ? [index] : [],
      );
      const etcdStops = stops.flatMap((event, index) =>
        event.pod === "etcd" && event.type === "stopping" ? [index] : [],
      );
      expect(apiServerExits).toHaveLength(3);
      expect(etcdStops).toHaveLength(3);
      expect(Math.max(...apiServerExits)).toBeLessThan(Math.min(...etcdStops));

      const restored = await agents.advance("restore");
      expect(restored.failed, messages(restored.statuses)).toBe(false);
      for (const node of etcd.nodes) {
        const status = restored.statuses.find((entry) => entry.member === node.memberName);
        expect(status?.oldDataDir).toBe(`${node.dataDir}.pre-restore-${restoreId}`);
        expect(existsSync(join(`${node.dataDir}.pre-restore-${restoreId}`, "member"))).toBe(true);
        expect(existsSync(`${node.dataDir}.download-${restoreId}.db`)).toBe(false);
        expect(existsSync(`${node.dataDir}.restore-${restoreId}`)).toBe(false);
      }

      // Agents that vanish after a phase (the kubelet may kill them) are started again: the phase is not redone.
      await agents.stop();
      agents = await startRestoreAgents({ s3, plans, initialPhase: "restore" });
      const again = await agents.waitForPhase("restore");
      expect(again.failed, messages(again.statuses)).toBe(false);
      for (const status of again.statuses) expect(status.message).toMatch(/^already restored/);

      const started = await agents.advance("start");
      expect(started.failed, messages(started.statuses)).toBe(false);
      // The barrier: every etcd runs before any API server starts.
      for (const node of etcd.nodes) {
        expect(etcd.supervisor.running(node.name, "etcd")).toBe(true);
        expect(etcd.supervisor.running(node.name, "kube-apiserver")).toBe(false);
      }
      await etcd.waitUntilHealthy();
      const shape = await clusterShape(etcd);
      expect(shape.memberIds).toHaveLength(3);
      expect(shape.leaders.size).toBe(1);
      expect(shape.memberIds).toContain([...shape.leaders][0]);
      expect(shape.clusterIds.size).toBe(1);
      expect([...shape.clusterIds][0]).not.toBe([...originalClusterIds][0]);

      const startsBefore = etcd.nodes.map((node) => restartCounts(etcd, node));
      const apiServers = await agents.advance("start-apiserver");
      expect(apiServers.failed, messages(apiServers.statuses)).toBe(false);
      await expect
        .poll(() => etcd.nodes.every((node) => etcd.supervisor.running(node.name, "kube-apiserver")))
        .toBe(true);
      // After the API answered ready, each node's scheduler and controller manager were stopped and started.
      for (const [index, node] of etcd.nodes.entries()) {
        const status = apiServers.statuses.find((entry) => entry.member === node.memberName);
        expect(status?.message).toBe(
          `kube-apiserver started; the API answered ready at ${node.apiServerReadyUrl}; restarted kube-scheduler kube-controller-manager`,
        );
        const before = startsBefore[index] as { scheduler: number; controllerManager: number };
        await expect
          .poll(() => restartCounts(etcd, node))
          .toEqual({
            scheduler: before.scheduler + 1,
            controllerManager: before.controllerManager + 1,
          });
        expect(etcd.supervisor.running(node.name, "kube-scheduler")).toBe(true);
        expect(etcd.supervisor.running(node.name, "kube-controller-manager")).toBe(true);
      }

      const finished = await agents.advance("finish");
      expect(finished.failed).toBe(false);
      expect(await Promise.all(agents.agents.map((agent) => agent.exitCode))).toEqual([0, 0, 0]);

      const before = await readKeys(etcd, "/before/", 2);
      expect(before.size).toBe(20);
      expect(before.get("/before/0")).toBe("value-0");
      expect(before.get("/before/19")).toBe("value-19");
      expect((await readKeys(etcd, "/after/", 1)).size).toBe(0);

      const texts = await Promise.all(
        etcd.nodes.map(async (node) => (await agents.readStatus(node.memberName))?.text ?? ""),
      );
      expectNoSecrets(agents, texts);
    } finally {
      await agents.stop();
    }
    // Eight barriers on three real members: room for a loaded two-core machine.
  }, 120_000);

  it("rolls every member back to its pre-restore data dir, bringing back what was written after the snapshot", async () => {
    const plans = await Promise.all(etcd.nodes.map((node) => planFor(s3, etcd, node, snapshot, restoreId)));
    const agents = await startRestoreAgents({ s3, plans, initialPhase: "rollback" });
    try {
      const rolledBack = await agents.waitForPhase("rollback");
      expect(rolledBack.failed, messages(rolledBack.statuses)).toBe(false);
      for (const status of rolledBack.statuses) expect(status.message).toMatch(/^rolled back/);
      await etcd.waitUntilHealthy();
      expect((await readKeys(etcd, "/after/", 1)).size).toBe(5);
      expect((await readKeys(etcd, "/before/0", 2)).get("/before/0")).toBe("changed-after-the-snapshot");
      expect((await clusterShape(etcd)).clusterIds).toEqual(originalClusterIds);
      for (const node of etcd.nodes) {
        expect(existsSync(`${node.dataDir}.pre-restore-${restoreId}`)).toBe(false);
        expect(existsSync(join(`${node.dataDir}.failed-${restoreId}`, "member"))).toBe(true);
        await expect.poll(() => etcd.supervisor.running(node.name, "kube-apiserver")).toBe(true);
      }
      // No plan follows a rollback: each agent ends by itself, not an hour later on its expired URLs.
      expect(await exitCodesWithin(agents, 10_000)).toEqual([0, 0, 0]);
      for (const agent of agents.agents) expect(agent.stderr()).not.toContain("HTTP 403");
    } finally {
      await agents.stop();
    }
  });
});

/**
 * Whether this process may mount a tmpfs: root with CAP_SYS_ADMIN, as on this project's machines (and the
 * CI's). Probed, so that an unprivileged run says why the volume test did not run instead of failing it.
 */
async function mayMount(): Promise<boolean> {
  const probe = await makeTempDir("mount-probe");
  try {
    await promisify(execFile)("mount", ["-t", "tmpfs", "-o", "size=1m", "mount-probe", probe.path]);
    await promisify(execFile)("umount", [probe.path]);
    return true;
  } catch (error) {
    console.warn(`the data-dir-volume tests need to mount a tmpfs, which failed here: ${String(error)}`);
    return false;
  } finally {
    await probe.remove();
  }
}

describe.skipIf(!(await mayMount()))("restore agent on a node whose data dir is a volume of its own", () => {
  let s3: LocalS3;
  let etcd: StaticPodEtcd;
  let snapshot: UploadedSnapshot;
  let node: StaticPodNode;
  const mounted: string[] = [];
  const volumeBytes = 256 * 1024 * 1024;
  const restoreId = "r-volume";

  beforeAll(async () => {
    [s3, etcd] = await Promise.all([
      startLocalS3(),
      // A tmpfs at the data dir, as an EBS volume mounted at /var/lib/etcd: neither the data dir nor a
      // sibling of it can be renamed onto that filesystem.
      startStaticPodEtcd({
        members: 1,
        beforeStart: async (nodes) => {
          for (const { dataDir } of nodes) {
            await mkdir(dataDir, { recursive: true });
            await promisify(execFile)("mount", [
              "-t",
              "tmpfs",
              "-o",
              `size=${volumeBytes}`,
              "etcd-data",
              dataDir,
            ]);
            mounted.push(dataDir);
          }
        },
      }),
    ]);
    node = etcd.nodes[0] as StaticPodNode;
    await putKeys(etcd, "/before/", 5, (index) => `value-${index}`);
    snapshot = await snapshotToS3(etcd, s3, "volume");
    await putKeys(etcd, "/after/", 3, (index) => `late-${index}`);
  });

  afterAll(async () => {
    // Detached at once; etcd's open files keep it until the supervisor stops etcd.
    for (const dataDir of mounted) await promisify(execFile)("umount", ["--lazy", dataDir]);
    await etcd?.stop();
    await s3?.stop();
  });

  const isMountPoint = async (path: string) =>
    promisify(execFile)("mountpoint", ["-q", path]).then(
      () => true,
      () => false,
    );

  it("restores by swapping the member dir inside the volume, keeps the old one there, and rolls back the same way", async () => {
    const plan = await planFor(s3, etcd, node, snapshot, restoreId);
    const agents = await startRestoreAgents({ s3, plans: [plan], initialPhase: "prepare" });
    try {
      const prepared = await agents.waitForPhase("prepare");
      expect(prepared.failed, messages(prepared.statuses)).toBe(false);
      // The free space is the volume's, not that of the filesystem the data dir's parent is on.
      expect(prepared.statuses[0]?.freeBytes).toBeLessThanOrEqual(volumeBytes);
      expect(agents.agents[0]?.stderr()).toContain(`${node.dataDir} is a mount point`);

      for (const phase of ["stop-apiserver", "stop", "restore"] as const) {
        const outcome = await agents.advance(phase);
        expect(outcome.failed, `${phase}: ${messages(outcome.statuses)}`).toBe(false);
      }
      const oldDataDir = join(node.dataDir, `pre-restore-${restoreId}`);
      expect((await agents.readStatus(node.memberName))?.status.oldDataDir).toBe(oldDataDir);
      expect(existsSync(join(oldDataDir, "member", "snap", "db"))).toBe(true);
      expect(await isMountPoint(node.dataDir)).toBe(true);
      // Nothing landed outside the volume, and no download or half-restored dir is left in it.
      expect(await readdir(dirname(node.dataDir))).toEqual([basename(node.dataDir)]);
      expect((await readdir(node.dataDir)).sort()).toEqual([
        "member",
        `pre-restore-${restoreId}`,
        `restored-${restoreId}`,
      ]);

      for (const phase of ["start", "start-apiserver"] as const) {
        const outcome = await agents.advance(phase);
        expect(outcome.failed, `${phase}: ${messages(outcome.statuses)}`).toBe(false);
      }
      expect(await readKeys(etcd, "/before/")).toEqual(
        new Map(Array.from({ length: 5 }, (_unused, index) => [`/before/${index}`, `value-${index}`])),
      );
      expect((await readKeys(etcd, "/after/")).size).toBe(0);

      // As when the health check at the barrier fails: the original member dir goes back in the volume.
      const rolledBack = await agents.advance("rollback");
      expect(rolledBack.failed, messages(rolledBack.statuses)).toBe(false);
      expect(rolledBack.statuses[0]?.message).toMatch(/^rolled back/);
      await etcd.waitUntilHealthy();
      expect((await readKeys(etcd, "/after/")).size).toBe(3);
      expect(await isMountPoint(node.dataDir)).toBe(true);
      expect((await readdir(node.dataDir)).sort()).toEqual([`failed-${restoreId}`, "member"]);
      expect(existsSync(join(node.dataDir, `failed-${restoreId}`, "member", "snap", "db"))).toBe(true);
      expect(await exitCodesWithin(agents, 10_000)).toEqual([0]);
    } finally {
      await agents.stop();
    }
  }, 120_000);

  it("says why a restore tool staged in a volume mounted noexec cannot run, at prepare, with etcd running", async () => {
    const { tool, invocations } = await stageRestoreTool(s3, etcd, "etcdctl-noexec");
    await promisify(execFile)("mount", ["-o", "remount,noexec", node.dataDir]);
    const plan = { ...(await planFor(s3, etcd, node, snapshot, "r-noexec")), tool };
    const agents = await startRestoreAgents({ s3, plans: [plan], initialPhase: "prepare" });
    try {
      const prepared = await agents.waitForPhase("prepare");
      expect(prepared.failed).toBe(true);
      expect(prepared.statuses[0]?.message).toBe(
        `cannot execute the staged etcdctl at ${node.dataDir}/tool-r-noexec/etcdctl: is ${node.dataDir} on a filesystem mounted noexec? Use toolPath instead`,
      );
      expect(existsSync(invocations)).toBe(false);
      expect(etcd.supervisor.running(node.name, "etcd")).toBe(true);
      await expectAgentsToAnswer(agents, "abort");
      expect(existsSync(join(node.dataDir, "tool-r-noexec"))).toBe(false);
    } finally {
      await agents.stop();
      await promisify(execFile)("mount", ["-o", "remount,exec", node.dataDir]);
    }
  }, 60_000);
});

describe("restore agent refusing what would not be safe on a one-member etcd", () => {
  let s3: LocalS3;
  let etcd: StaticPodEtcd;
  let snapshot: UploadedSnapshot;
  let node: StaticPodNode;

  beforeAll(async () => {
    [s3, etcd] = await Promise.all([startLocalS3(), startStaticPodEtcd({ members: 1 })]);
    node = etcd.nodes[0] as StaticPodNode;
    await putKeys(etcd, "/before/", 3, (index) => `value-${index}`);
    snapshot = await snapshotToS3(etcd, s3, "one-member");
    await etcd.etcdctl(["put", "/after/0", "late"]);
  });

  afterAll(async () => {
    await etcd?.stop();
    await s3?.stop();
  });

  it("refuses to restore while etcd still runs, touching nothing", async () => {
    const plan = await planFor(s3, etcd, node, snapshot, "r-not-stopped");
    const agents = await startRestoreAgents({ s3, plans: [plan], initialPhase: "restore" });
    try {
      const outcome = await agents.waitForPhase("restore");
      expect(outcome.failed).toBe(true);
      expect(outcome.statuses[0]?.message).toMatch(
        /etcd's manifest is still in .*: run the stop phase first/,
      );
      expect(etcd.supervisor.running(node.name, "etcd")).toBe(true);
      expect(await readdir(dirname(node.dataDir))).toEqual([basename(node.dataDir)]);
      await expectAgentsToAnswer(agents, "abort");
    } finally {
      await agents.stop();
    }
  });

  it("refuses to stop etcd while kube-apiserver's manifest is in place: stop-apiserver comes first", async () => {
    const plan = await planFor(s3, etcd, node, snapshot, "r-apiserver-not-stopped");
    const agents = await startRestoreAgents({ s3, plans: [plan], initialPhase: "stop" });
    try {
      const outcome = await agents.waitForPhase("stop");
      expect(outcome.failed).toBe(true);
      expect(outcome.statuses[0]?.message).toBe(
        `kube-apiserver's manifest is still in ${node.manifestDir}: run the stop-apiserver phase first`,
      );
      expect(existsSync(join(node.manifestDir, etcdManifestName))).toBe(true);
      expect(etcd.supervisor.running(node.name, "etcd")).toBe(true);
      expect(etcd.supervisor.running(node.name, "kube-apiserver")).toBe(true);
      await expectAgentsToAnswer(agents, "abort");
    } finally {
      await agents.stop();
    }
  });

  it("fails prepare on a node without room for the download, the new data dir and the old one", async () => {
    const plan = await planFor(s3, etcd, node, snapshot, "r-no-room");
    const agents = await startRestoreAgents({
      s3,
      plans: [{ ...plan, minimumFreeBytes: Number.MAX_SAFE_INTEGER }],
      initialPhase: "prepare",
    });
    try {
      const outcome = await agents.waitForPhase("prepare");
      expect(outcome.failed).toBe(true);
      expect(outcome.statuses[0]?.message).toMatch(
        new RegExp(
          `^only \\d+ bytes free on the filesystem of ${node.dataDir}; the restore needs ${Number.MAX_SAFE_INTEGER}`,
        ),
      );
      expect(outcome.statuses[0]?.freeBytes).toBeGreaterThan(0);
      expect(etcd.supervisor.running(node.name, "etcd")).toBe(true);
      const aborted = await expectAgentsToAnswer(agents, "abort");
      expect(aborted.statuses[0]?.message).toBe("aborted; the agent changed nothing in this phase");
    } finally {
      await agents.stop();
    }
  });

  it("fails prepare, changing nothing, when etcd's manifest keeps the WAL outside the data dir", async () => {
    // A copy of the member's manifest with --wal-dir, parked, where the supervisor does not run it.
    const walManifest = "etcd-wal-dir.json";
    const manifest = await readFile(join(node.manifestDir, etcdManifestName), "utf8");
    const walDir = join(etcd.baseDir, "wal");
    expect(manifest).toContain('"--data-dir=');
    await mkdir(node.parkedManifestDir, { recursive: true });
    await writeFile(
      join(node.parkedManifestDir, walManifest),
      manifest.replace('"--data-dir=', `"--wal-dir=${walDir}", "--data-dir=`),
    );
    const plan = await planFor(s3, etcd, node, snapshot, "r-wal-dir");
    const agents = await startRestoreAgents({
      s3,
      plans: [{ ...plan, member: { ...plan.member, etcdManifest: walManifest } }],
      initialPhase: "prepare",
    });
    try {
      const outcome = await agents.waitForPhase("prepare");
      expect(outcome.failed).toBe(true);
      expect(outcome.statuses[0]?.message).toBe(
        `etcd's manifest sets --wal-dir=${walDir}, which the agent does not restore: restore this member by hand (docs/restore.md)`,
      );
      expect(etcd.supervisor.running(node.name, "etcd")).toBe(true);
      await expectAgentsToAnswer(agents, "abort");
    } finally {
      await agents.stop();
      await rm(join(node.parkedManifestDir, walManifest), { force: true });
    }
  });

  it("fails at restore on a wrong sha256, leaves the data dir untouched, and the same agent's rollback starts etcd on it", async () => {
    const restoreId = "r-wrong-sha";
    const plan = await planFor(s3, etcd, node, snapshot, restoreId);
    const wrongSha = `${snapshot.sha256.slice(0, 63)}${snapshot.sha256.endsWith("0") ? "1" : "0"}`;
    const agents = await startRestoreAgents({
      s3,
      plans: [{ ...plan, snapshot: { ...plan.snapshot, sha256: wrongSha } }],
      initialPhase: "prepare",
    });
    let untouched: string[];
    try {
      expect((await agents.waitForPhase("prepare")).failed).toBe(false);
      expect((await agents.advance("stop-apiserver")).failed).toBe(false);
      expect((await agents.advance("stop")).failed).toBe(false);
      untouched = await fingerprint(node.dataDir);
      expect(untouched.length).toBeGreaterThan(0);

      const restore = await agents.advance("restore");
      expect(restore.failed).toBe(true);
      const status = restore.statuses[0];
      expect(status?.phase).toBe("restore");
      expect(status?.state).toBe("failed");
      expect(status?.message).toBe(
        `snapshot sha256 mismatch: the download hashes to ${snapshot.sha256}, the plan expects ${wrongSha}`,
      );
      // The failure is logged last, or just before the line saying that the agent waits for the rollback.
      expect(status?.log.slice(-2).join("\n")).toContain("FAILED: snapshot sha256 mismatch");
      expect(await fingerprint(node.dataDir)).toEqual(untouched);
      expect((await readdir(dirname(node.dataDir))).sort()).toEqual([basename(node.dataDir)]);
      expect(etcd.supervisor.running(node.name, "etcd")).toBe(false);
      expectNoSecrets(agents, [(await agents.readStatus(node.memberName))?.text ?? ""]);

      // The agent that failed is still there, and rolls back when the plan says so.
      const outcome = await expectAgentsToAnswer(agents, "rollback");
      expect(outcome.statuses[0]?.message).toMatch(/^nothing was swapped on this node/);
      expect(outcome.statuses[0]?.log.join("\n")).toContain(
        "waiting for the state machine's rollback or abort",
      );
      await etcd.waitUntilHealthy();
      expect((await readKeys(etcd, "/after/")).get("/after/0")).toBe("late");
      expect((await readKeys(etcd, "/before/")).size).toBe(3);
    } finally {
      await agents.stop();
    }
  });

  /** The agent that failed puts the data dir back and etcd up, for the next test. */
  async function rollBackAfterFailure(agents: RestoreAgents) {
    await expectAgentsToAnswer(agents, "rollback");
    await etcd.waitUntilHealthy();
  }

  it("names a corrupt snapshot by its hash when the restore tool, run beside the hash, fails on it too", async () => {
    const restoreId = "r-corrupt";
    const content = Buffer.from(await readFile(join(etcd.baseDir, "one-member.db")));
    // One byte of the database flipped; the trailer still holds the sha256 of the original.
    const middle = Math.floor((content.length - 32) / 2);
    content[middle] = (content[middle] as number) ^ 0xff;
    const key = "snapshots/one-member-corrupt.db";
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: content }));
    const corrupt = await planFor(s3, etcd, node, { ...snapshot, key }, restoreId);
    const agents = await startRestoreAgents({ s3, plans: [corrupt], initialPhase: "prepare" });
    try {
      expect((await agents.waitForPhase("prepare")).failed).toBe(false);
      expect((await agents.advance("stop-apiserver")).failed).toBe(false);
      expect((await agents.advance("stop")).failed).toBe(false);
      const restore = await agents.advance("restore");
      expect(restore.failed).toBe(true);
      const status = restore.statuses[0] as RestoreAgentStatus;
      expect(status.message).toMatch(
        new RegExp(
          `^snapshot is corrupt: its database hashes to [0-9a-f]{64} but its trailer says ${snapshot.sha256}$`,
        ),
      );
      // etcdctl's own integrity check refused it as well.
      expect(status.log.join("\n")).toContain("expected sha256");
      expect((await readdir(dirname(node.dataDir))).sort()).toEqual([basename(node.dataDir)]);
      await rollBackAfterFailure(agents);
    } finally {
      await agents.stop();
    }
  }, 60_000);

  it("refuses a snapshot object larger than the plan says, before restoring it, leaving no download behind", async () => {
    const restoreId = "r-wrong-size";
    const plan = await planFor(s3, etcd, node, snapshot, restoreId);
    const agents = await startRestoreAgents({
      s3,
      plans: [{ ...plan, snapshot: { ...plan.snapshot, bytes: snapshot.bytes - 512 } }],
      initialPhase: "prepare",
    });
    try {
      expect((await agents.waitForPhase("prepare")).failed).toBe(false);
      expect((await agents.advance("stop-apiserver")).failed).toBe(false);
      expect((await agents.advance("stop")).failed).toBe(false);
      const restore = await agents.advance("restore");
      expect(restore.failed).toBe(true);
      expect(restore.statuses[0]?.message).toBe(
        `snapshot download has ${snapshot.bytes} bytes, the plan says ${snapshot.bytes - 512}`,
      );
      expect(restore.statuses[0]?.log.join("\n")).not.toContain("attempt");
      expect((await readdir(dirname(node.dataDir))).sort()).toEqual([basename(node.dataDir)]);
      await rollBackAfterFailure(agents);
    } finally {
      await agents.stop();
    }
  }, 60_000);

  it("tries a download cut short three times, then fails the restore leaving no part of it behind", async () => {
    const restoreId = "r-cut-short";
    const content = await readFile(join(etcd.baseDir, "one-member.db"));
    // Promises the whole snapshot, sends half of it, then drops the connection: curl sees it cut short.
    let requests = 0;
    const cutter = createServer((_request, response) => {
      requests++;
      response.writeHead(200, { "Content-Length": String(content.length) });
      response.write(content.subarray(0, Math.floor(content.length / 2)), () => response.destroy());
    });
    await new Promise<void>((resolve) => cutter.listen(0, "127.0.0.1", resolve));
    const plan = await planFor(s3, etcd, node, snapshot, restoreId);
    const url = `http://127.0.0.1:${(cutter.address() as AddressInfo).port}/snapshot`;
    const agents = await startRestoreAgents({
      s3,
      plans: [{ ...plan, snapshot: { ...plan.snapshot, url } }],
      initialPhase: "prepare",
    });
    try {
      expect((await agents.waitForPhase("prepare")).failed).toBe(false);
      expect((await agents.advance("stop-apiserver")).failed).toBe(false);
      expect((await agents.advance("stop")).failed).toBe(false);
      const untouched = await fingerprint(node.dataDir);

      const restore = await agents.advance("restore");
      expect(restore.failed).toBe(true);
      const status = restore.statuses[0] as RestoreAgentStatus;
      expect(status.message).toMatch(
        /^cannot download the snapshot: the transfer failed 3 times \(curl exit 18: curl: \(18\) transfer closed with \d+ bytes remaining to read\)$/,
      );
      expect(status.log.filter((line) => line.includes("failed: HTTP 200, curl exit 18"))).toHaveLength(3);
      expect(requests).toBe(3);
      expect(await fingerprint(node.dataDir)).toEqual(untouched);
      expect((await readdir(dirname(node.dataDir))).sort()).toEqual([basename(node.dataDir)]);
      await rollBackAfterFailure(agents);
    } finally {
      await agents.stop();
      cutter.close();
    }
  }, 60_000);

  it("reports how far a slow download got while it runs, then restores from it", async () => {
    const restoreId = "r-slow-download";
    const content = await readFile(join(etcd.baseDir, "one-member.db"));
    // Sends half of the snapshot, pauses as a slow link would, then the rest.
    const half = Math.floor(content.length / 2);
    const slow = createServer((_request, response) => {
      response.writeHead(200, { "Content-Length": String(content.length) });
      response.write(content.subarray(0, half));
      setTimeout(() => response.end(content.subarray(half)), 2500);
    });
    await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
    const plan = await planFor(s3, etcd, node, snapshot, restoreId);
    const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}/snapshot`;
    const agents = await startRestoreAgents({
      s3,
      plans: [{ ...plan, snapshot: { ...plan.snapshot, url } }],
      initialPhase: "prepare",
      env: { ETCD_RESTORE_AGENT_PROGRESS_SECONDS: "0" },
    });
    try {
      expect((await agents.waitForPhase("prepare")).failed).toBe(false);
      expect((await agents.advance("stop-apiserver")).failed).toBe(false);
      expect((await agents.advance("stop")).failed).toBe(false);
      const restoring = agents.advance("restore");
      // How much of it: what curl has written out, which its buffering may keep below what it received.
      const progress = new RegExp(
        `^downloading the snapshot: \\d+ KiB of ${content.length >> 10} KiB \\(\\d+%\\)$`,
      );
      await expect
        .poll(async () => (await agents.readStatus(node.memberName))?.status.message, { timeout: 10_000 })
        .toMatch(progress);
      expect((await restoring).failed).toBe(false);
      // The restored dir was swapped in: the rollback keeps it aside, which the next tests must not find.
      await rollBackAfterFailure(agents);
      const restored = `${node.dataDir}.failed-${restoreId}`;
      expect(await readdir(dirname(node.dataDir))).toContain(basename(restored));
      await rm(restored, { recursive: true, force: true });
    } finally {
      await agents.stop();
      slow.close();
    }
  }, 60_000);

  /**
   * Stages a stand-in for the restore tool in the bucket: a script that records each invocation and runs
   * this machine's etcdctl. Returns the plan's `tool` and where the invocations are recorded.
   */
  it("refuses a staged restore tool whose sha256 differs, at prepare, without ever running it", async () => {
    const restoreId = "r-tool-tampered";
    const { tool, invocations } = await stageRestoreTool(s3, etcd, "etcdctl-tampered");
    const expected = "0".repeat(64);
    const plan = {
      ...(await planFor(s3, etcd, node, snapshot, restoreId)),
      tool: { ...tool, sha256: expected },
    };
    const agents = await startRestoreAgents({ s3, plans: [plan], initialPhase: "prepare" });
    try {
      const prepared = await agents.waitForPhase("prepare");
      expect(prepared.failed).toBe(true);
      expect(prepared.statuses[0]?.message).toBe(
        `the staged etcdctl hashes to ${tool.sha256}, the plan expects ${expected}: not run`,
      );
      expect(existsSync(invocations)).toBe(false);
      expect(etcd.supervisor.running(node.name, "etcd")).toBe(true);
      expectNoSecrets(agents, [(await agents.readStatus(node.memberName))?.text ?? ""]);
      await expectAgentsToAnswer(agents, "abort");
      // Neither the download nor its directory stays behind.
      expect(await readdir(dirname(node.dataDir))).toEqual([basename(node.dataDir)]);
    } finally {
      await agents.stop();
    }
  });

  it("restores with a restore tool staged in the bucket, run only after its sha256 matched, and removes it", async () => {
    const restoreId = "r-staged-tool";
    const { tool, invocations } = await stageRestoreTool(s3, etcd, "etcdctl-staged");
    const plan = { ...(await planFor(s3, etcd, node, snapshot, restoreId)), tool };
    const agents = await startRestoreAgents({ s3, plans: [plan], initialPhase: "prepare" });
    try {
      const prepared = await agents.waitForPhase("prepare");
      expect(prepared.failed, messages(prepared.statuses)).toBe(false);
      expect(prepared.statuses[0]?.toolVersion).toMatch(/^etcdctl 3\.4\./);
      expect(prepared.statuses[0]?.log.join("\n")).toContain("downloading etcdctl from the bucket");
      // Kept beside the data dir (not in /tmp, often noexec) until the restore is over.
      expect(existsSync(`${node.dataDir}.tool-${restoreId}`)).toBe(true);
      for (const phase of [
        "stop-apiserver",
        "stop",
        "restore",
        "start",
        "start-apiserver",
        "finish",
      ] as const) {
        const outcome = await agents.advance(phase);
        expect(outcome.failed, `${phase}: ${messages(outcome.statuses)}`).toBe(false);
      }
      const calls = (await readFile(invocations, "utf8")).trim().split("\n");
      expect(calls[0]).toBe("version");
      expect(
        calls.some((call) => call.startsWith(`snapshot restore ${node.dataDir}.download-${restoreId}.db`)),
      ).toBe(true);
      await etcd.waitUntilHealthy();
      expect((await readKeys(etcd, "/before/")).size).toBe(3);
      expect((await readKeys(etcd, "/after/")).size).toBe(0);
      expect(await exitCodesWithin(agents, 10_000)).toEqual([0]);
      expect(existsSync(`${node.dataDir}.tool-${restoreId}`)).toBe(false);
    } finally {
      await agents.stop();
    }
  }, 90_000);

  /**
   * A restore tool on the node that has --bump-revision and --mark-compacted, as etcdutl 3.5 with the
   * backport has: it records each invocation and runs this machine's etcdctl 3.4 without those flags
   * (which 3.4 lacks), so the restore itself is real and the flags it was given are on record.
   */
  async function toolWithRevisionFlags(name: string) {
    const realTool = (await promisify(execFile)("bash", ["-c", "command -v etcdctl"])).stdout.trim();
    const path = join(etcd.baseDir, name);
    const invocations = `${path}.invocations`;
    await writeFile(
      path,
      `#!/bin/bash
printf '%s\\n' "$*" >>'${invocations}'
if [[ "$1 $2 $3" == "snapshot restore --help" ]]; then
  '${realTool}' snapshot restore --help 2>&1
  printf '      --bump-revision uint\\n      --mark-compacted\\n'
  exit 0
fi
args=()
for argument in "$@"; do [[ $argument == --bump-revision=* || $argument == --mark-compacted ]] || args+=("$argument"); done
exec '${realTool}' "\${args[@]}"
`,
      { mode: 0o755 },
    );
    return { path, invocations };
  }

  it("fails prepare, with etcd still running, when the bump is required and the restore tool lacks the flag", async () => {
    const realTool = (await promisify(execFile)("bash", ["-c", "command -v etcdctl"])).stdout.trim();
    const plan: RestorePlan = {
      ...(await planFor(s3, etcd, node, snapshot, "r-bump-required")),
      restoreTool: "etcdutl",
      etcdutlPath: realTool,
      bumpRevision: 1_000_000_000,
      markCompacted: true,
    };
    const agents = await startRestoreAgents({ s3, plans: [plan], initialPhase: "prepare" });
    try {
      const prepared = await agents.waitForPhase("prepare");
      expect(prepared.failed).toBe(true);
      expect(prepared.statuses[0]?.message).toMatch(
        /^etcdutl 3\.4\.\d+ has no --bump-revision or --mark-compacted: stage a release that has them \(toolObject\), or set allowWithoutRevisionBump/,
      );
      expect(etcd.supervisor.running(node.name, "etcd")).toBe(true);
      await expectAgentsToAnswer(agents, "abort");
    } finally {
      await agents.stop();
    }
  });

  it("bumps the revision with an optional bump where the restore tool has the flags, and says so", async () => {
    const restoreId = "r-bump-optional";
    const tool = await toolWithRevisionFlags("etcdctl-with-bump");
    const plan: RestorePlan = {
      ...(await planFor(s3, etcd, node, snapshot, restoreId)),
      etcdctlPath: tool.path,
      bumpRevision: 1_000_000_000,
      markCompacted: true,
      revisionBumpOptional: true,
    };
    const agents = await startRestoreAgents({ s3, plans: [plan], initialPhase: "prepare" });
    try {
      for (const phase of ["prepare", "stop-apiserver", "stop", "restore"] as const) {
        const outcome = phase === "prepare" ? await agents.waitForPhase(phase) : await agents.advance(phase);
        expect(outcome.failed, `${phase}: ${messages(outcome.statuses)}`).toBe(false);
        if (phase === "restore") {
          expect(outcome.statuses[0]?.message).toBe(
            `restored from the snapshot at revision ${snapshot.revision}; revisions bumped by 1000000000`,
          );
        }
      }
      const calls = (await readFile(tool.invocations, "utf8")).trim().split("\n");
      expect(calls.find((call) => call.startsWith("snapshot restore /"))).toMatch(
        / --bump-revision=1000000000 --mark-compacted$/,
      );
      for (const phase of ["start", "start-apiserver", "finish"] as const) {
        const outcome = await agents.advance(phase);
        expect(outcome.failed, `${phase}: ${messages(outcome.statuses)}`).toBe(false);
      }
      await etcd.waitUntilHealthy();
    } finally {
      await agents.stop();
    }
  }, 90_000);
});

describe("restore agent starting kube-apiserver and restarting the scheduler and controller manager", () => {
  let s3: LocalS3;
  let etcd: StaticPodEtcd;
  let node: StaticPodNode;
  // Only the start-apiserver phase runs here: the snapshot is never downloaded.
  const snapshot: UploadedSnapshot = {
    key: "snapshots/unused.db",
    bytes: 512 + 32,
    sha256: "0".repeat(64),
    revision: 1,
  };
  // A stand-in whose command line does not name its component: the agent cannot see it stop.
  const hiddenManifestName = "hidden-component.json";
  const shortWaits = { ETCD_RESTORE_AGENT_RESTART_GRACE_SECONDS: "0.5" };
  let certificates: TestCertificates;

  beforeAll(async () => {
    [s3, etcd] = await Promise.all([startLocalS3(), startStaticPodEtcd({ members: 1 })]);
    node = etcd.nodes[0] as StaticPodNode;
    await writeStandInComponentManifest({
      manifestDir: node.manifestDir,
      component: "hidden-component",
      fileName: hiddenManifestName,
      command: ["sleep", "infinity"],
    });
    const pki = join(etcd.baseDir, "pki");
    await mkdir(pki);
    certificates = await createTestCertificates(pki);
  });

  afterAll(async () => {
    await etcd?.stop();
    await s3?.stop();
  });

  /**
   * Starts start-apiserver with kube-apiserver never ready, stops the agent (SIGTERM) once the phase is
   * under way, and returns how it ended and what it last reported.
   */
  async function stopDuringStartApiServer(restoreId: string, env: Record<string, string>) {
    await parkApiServer(null);
    const plan = await planFor(s3, etcd, node, snapshot, restoreId);
    const agents = await startRestoreAgents({
      s3,
      plans: [{ ...plan, startTimeoutSeconds: 60 }],
      initialPhase: "start-apiserver",
      env,
    });
    try {
      const agent = agents.agents[0] as (typeof agents.agents)[number];
      await expect
        .poll(async () => (await agents.readStatus(node.memberName))?.status.message, { timeout: 15_000 })
        .toBe("start-apiserver in progress");
      agent.child.kill("SIGTERM");
      const exitCode = await agent.exitCode;
      return { exitCode, status: (await agents.readStatus(node.memberName))?.status };
    } finally {
      await agents.stop();
    }
  }

  /**
   * Parks kube-apiserver, as the stop phase does, with a stand-in that answers ready as given: over plain
   * HTTP at node.apiServerReadyUrl, or like kubeadm's (https, its port as --secure-port, and `flags`).
   */
  async function parkApiServer(readyAfterMs: number | null, asKubeadm?: { flags: string[] }) {
    await rm(join(node.manifestDir, apiServerManifestName), { force: true });
    await writeStandInApiServerManifest({
      manifestDir: node.parkedManifestDir,
      fileName: apiServerManifestName,
      command: standInApiServerCommand({
        port: node.apiServerPort,
        readyAfterMs,
        ...(asKubeadm
          ? {
              tls: { certFile: certificates.serverCertFile, keyFile: certificates.serverKeyFile },
              flags: asKubeadm.flags,
            }
          : {}),
      }),
    });
    await expect.poll(() => etcd.supervisor.running(node.name, "kube-apiserver")).toBe(false);
  }

  /** Runs the start-apiserver phase, then `after` with the same agents, before they are stopped. */
  async function runStartApiServer(plan: RestorePlan, after?: (agents: RestoreAgents) => Promise<void>) {
    const agents = await startRestoreAgents({
      s3,
      plans: [plan],
      initialPhase: "start-apiserver",
      env: shortWaits,
    });
    try {
      const started = Date.now();
      const outcome = await agents.waitForPhase("start-apiserver", 30_000);
      const seconds = (Date.now() - started) / 1000;
      await after?.(agents);
      return { outcome, seconds };
    } finally {
      await agents.stop();
    }
  }

  it("waits for /readyz to answer ok before restarting what is present, and puts back what an interrupted run left parked", async () => {
    await parkApiServer(2000);
    // An earlier agent stopped mid-way with the controller manager's manifest parked.
    await rename(
      join(node.manifestDir, controllerManagerManifestName),
      join(node.parkedManifestDir, controllerManagerManifestName),
    );
    await expect.poll(() => etcd.supervisor.running(node.name, "kube-controller-manager")).toBe(false);
    const before = restartCounts(etcd, node);
    const hiddenBefore = startedCount(etcd, node, "hidden-component");
    const plan = await planFor(s3, etcd, node, snapshot, "r-start-apiserver");
    const { outcome, seconds } = await runStartApiServer({
      ...plan,
      member: {
        ...plan.member,
        restartManifests: [
          schedulerManifestName,
          controllerManagerManifestName,
          hiddenManifestName,
          "absent.yaml",
        ],
      },
    });

    expect(outcome.failed, messages(outcome.statuses)).toBe(false);
    const status = outcome.statuses[0] as RestoreAgentStatus;
    expect(status.message).toBe(
      `kube-apiserver started; the API answered ready at ${node.apiServerReadyUrl}; restarted kube-scheduler kube-controller-manager hidden-component; not on this node: absent.yaml`,
    );
    expect(status.apiReadiness).toBe("ready");
    // The stand-in answers 500 for its first two seconds: the agent waited through them.
    expect(seconds).toBeGreaterThanOrEqual(2);
    expect(status.log.join("\n")).toMatch(
      /kube-apiserver is ready[\s\S]*kube-scheduler has stopped \(pid \d+\)/,
    );
    expect(status.log.join("\n")).toContain(
      "no process of hidden-component visible here: leaving its manifest out for 0.5 s",
    );
    await expect
      .poll(() => restartCounts(etcd, node))
      .toEqual({
        scheduler: before.scheduler + 1,
        controllerManager: before.controllerManager + 1,
      });
    await expect.poll(() => startedCount(etcd, node, "hidden-component")).toBe(hiddenBefore + 1);
    for (const name of [schedulerManifestName, controllerManagerManifestName, hiddenManifestName]) {
      expect(existsSync(join(node.manifestDir, name))).toBe(true);
      expect(existsSync(join(node.parkedManifestDir, name))).toBe(false);
    }
    const response = await fetch(node.apiServerReadyUrl);
    expect([response.status, await response.text()]).toEqual([200, "ok"]);
  }, 60_000);

  it("fails the phase within its bound when /readyz never answers ok, restarting nothing", async () => {
    await parkApiServer(null);
    const before = restartCounts(etcd, node);
    const plan = await planFor(s3, etcd, node, snapshot, "r-never-ready");
    let restartsAtFailure: ReturnType<typeof restartCounts> | undefined;
    let rollback: RestoreAgentStatus | undefined;
    const { outcome, seconds } = await runStartApiServer(
      { ...plan, startTimeoutSeconds: 4 },
      async (agents) => {
        restartsAtFailure = restartCounts(etcd, node);
        rollback = (await expectAgentsToAnswer(agents, "rollback")).statuses[0];
      },
    );

    expect(outcome.failed).toBe(true);
    const status = outcome.statuses[0] as RestoreAgentStatus;
    expect(status.phase).toBe("start-apiserver");
    expect(status.state).toBe("failed");
    // The stand-in answers 500 once it runs; on a loaded machine it may not listen yet when time is up.
    expect(status.message).toMatch(
      new RegExp(
        `^kube-apiserver did not answer ready at ${node.apiServerReadyUrl.replaceAll(".", "\\.")} within 4 s \\(last: (HTTP 500 \\[-\\]etcd failed: reason withheld; readyz check failed|no answer \\(.*\\))\\); kube-scheduler and kube-controller-manager were not restarted$`,
      ),
    );
    // bash's SECONDS counts whole seconds, so a 4 s bound can end after 3 s and a fraction.
    expect(seconds).toBeGreaterThanOrEqual(3);
    expect(seconds).toBeLessThan(12);
    expect(restartsAtFailure).toEqual(before);
    // The agent whose phase failed rolled its node back itself. etcd kept running on its own data dir
    // here (nothing was swapped in this test), so the rollback left it running.
    expect(rollback?.message).toBe(
      "etcd was never stopped on this node and kept running; what was parked is back, etcd is healthy",
    );
    await expect.poll(() => etcd.supervisor.running(node.name, "kube-apiserver")).toBe(true);
  }, 60_000);

  it("rolls back a failure before the stop barrier without stopping etcd: only what was parked goes back", async () => {
    // As after a failed stop-apiserver phase: kube-apiserver parked, etcd untouched and serving.
    await parkApiServer(0);
    const etcdStarts = startedCount(etcd, node, "etcd");
    const plan = await planFor(s3, etcd, node, snapshot, "r-rollback-before-stop");
    const agents = await startRestoreAgents({ s3, plans: [plan], initialPhase: "rollback", env: shortWaits });
    try {
      const rolledBack = await agents.waitForPhase("rollback");
      expect(rolledBack.failed, messages(rolledBack.statuses)).toBe(false);
      expect(rolledBack.statuses[0]?.message).toBe(
        "etcd was never stopped on this node and kept running; what was parked is back, etcd is healthy",
      );
    } finally {
      await agents.stop();
    }
    expect(startedCount(etcd, node, "etcd")).toBe(etcdStarts);
    await expect.poll(() => etcd.supervisor.running(node.name, "kube-apiserver")).toBe(true);
  }, 60_000);

  it("rolls back a stop that never completed (a hung kubelet) at once: nothing swapped, both manifests back", async () => {
    // etcd's manifest parked but etcd still serving, as when the kubelet does not act on the move: a
    // manifest of a process that is not etcd stands for it, while the node's etcd goes on answering.
    const hungManifest = "etcd-under-hung-kubelet.json";
    await writeStandInComponentManifest({
      manifestDir: node.parkedManifestDir,
      component: "etcd-under-hung-kubelet",
      fileName: hungManifest,
      command: ["sleep", "infinity"],
    });
    await parkApiServer(0);
    const plan = await planFor(s3, etcd, node, snapshot, "r-rollback-hung-stop");
    const agents = await startRestoreAgents({
      s3,
      plans: [{ ...plan, member: { ...plan.member, etcdManifest: hungManifest }, stopTimeoutSeconds: 60 }],
      initialPhase: "rollback",
      env: shortWaits,
    });
    const started = Date.now();
    try {
      const rolledBack = await agents.waitForPhase("rollback");
      expect(rolledBack.failed, messages(rolledBack.statuses)).toBe(false);
      expect(rolledBack.statuses[0]?.message).toBe(
        "nothing was swapped on this node; etcd's and kube-apiserver's manifests are back, etcd is healthy",
      );
      // It did not wait out the stop bound for an etcd that was never going to stop.
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(existsSync(join(node.manifestDir, hungManifest))).toBe(true);
      expect(existsSync(join(node.parkedManifestDir, hungManifest))).toBe(false);
      await expect.poll(() => etcd.supervisor.running(node.name, "kube-apiserver")).toBe(true);
    } finally {
      await agents.stop();
      await rm(join(node.manifestDir, hungManifest), { force: true });
    }
  }, 60_000);

  it("without a URL, asks the one kube-apiserver's manifest names: https on its --secure-port, verified for the name kubernetes", async () => {
    await parkApiServer(1000, { flags: [] });
    const plan = await planFor(s3, etcd, node, snapshot, "r-ready-url-from-manifest");
    const { apiServerReadyUrl: _unused, ...member } = plan.member;
    const { outcome, seconds } = await runStartApiServer({
      ...plan,
      member: { ...member, apiServerCaFile: certificates.caFile, restartManifests: [] },
    });
    expect(outcome.failed, messages(outcome.statuses)).toBe(false);
    const derived = `https://127.0.0.1:${node.apiServerPort}/readyz`;
    const status = outcome.statuses[0] as RestoreAgentStatus;
    expect(status.message).toBe(
      `kube-apiserver started; the API answered ready at ${derived}; no restart manifests in the plan`,
    );
    expect(status.apiReadiness).toBe("ready");
    expect(seconds).toBeGreaterThanOrEqual(1);
    expect(status.log.join("\n")).toContain(
      `waiting up to 30 s for ${derived} (from kube-apiserver's manifest (--secure-port=${node.apiServerPort})) to answer ok`,
    );
    expect(status.log.join("\n")).toContain(
      `verifying kube-apiserver's certificate for the name kubernetes while connecting to 127.0.0.1:${node.apiServerPort}`,
    );
  }, 60_000);

  it.each([
    {
      case: "the manifest turns anonymous requests off",
      flags: ["--anonymous-auth=false"],
      checkApiReadiness: undefined,
      reason:
        "kube-apiserver runs with --anonymous-auth=false, so /readyz refuses the agent, which has no credentials; set restore.apiServerReadyUrl to none to say so",
    },
    {
      case: "the target says none",
      flags: [],
      checkApiReadiness: false,
      reason: "the target's restore.apiServerReadyUrl is none",
    },
  ])(
    "does not ask when $case, and says why",
    async ({ flags, checkApiReadiness, reason }) => {
      await parkApiServer(null, { flags });
      const plan = await planFor(s3, etcd, node, snapshot, `r-not-asked-${flags.length}`);
      const { apiServerReadyUrl: _unused, ...member } = plan.member;
      const { outcome } = await runStartApiServer({
        ...plan,
        member: {
          ...member,
          restartManifests: [],
          ...(checkApiReadiness === false ? { checkApiReadiness } : {}),
        },
      });
      expect(outcome.failed, messages(outcome.statuses)).toBe(false);
      expect(outcome.statuses[0]?.message).toBe(
        `kube-apiserver started; API readiness not checked (${reason}); no restart manifests in the plan`,
      );
      expect(outcome.statuses[0]?.apiReadiness).toBe("not checked");
    },
    60_000,
  );

  it("skips the readiness check when neither the plan nor the manifest names a port, says so through finish, and restarts a component it can see by its command line", async () => {
    await parkApiServer(null);
    const before = restartCounts(etcd, node);
    const plan = await planFor(s3, etcd, node, snapshot, "r-no-ready-url");
    const { apiServerReadyUrl: _unused, ...member } = plan.member;
    let finished: RestoreAgentStatus | undefined;
    const { outcome } = await runStartApiServer(
      { ...plan, member: { ...member, restartManifests: [schedulerManifestName] } },
      async (agents) => {
        finished = (await agents.advance("finish")).statuses[0];
      },
    );
    expect(outcome.failed, messages(outcome.statuses)).toBe(false);
    expect(outcome.statuses[0]?.message).toBe(
      "kube-apiserver started; API readiness not checked (kube-apiserver's manifest sets no --secure-port; set restore.apiServerReadyUrl); restarted kube-scheduler",
    );
    expect(outcome.statuses[0]?.apiReadiness).toBe("not checked");
    // What the success notice's summary carries from the last phase.
    expect(finished).toMatchObject({
      phase: "finish",
      state: "done",
      message:
        "finished; API readiness was not checked (kube-apiserver's manifest sets no --secure-port; set restore.apiServerReadyUrl)",
      apiReadiness: "not checked",
    });
    await expect
      .poll(() => restartCounts(etcd, node))
      .toEqual({ ...before, scheduler: before.scheduler + 1 });
  }, 60_000);

  it("leaves its done report standing when stopped after the phase, as the kubelet stops agent pods then", async () => {
    await parkApiServer(null);
    const plan = await planFor(s3, etcd, node, snapshot, "r-stopped-after-done");
    const { apiServerReadyUrl: _unused, ...member } = plan.member;
    let afterStop: RestoreAgentStatus | undefined;
    const { outcome } = await runStartApiServer(
      { ...plan, member: { ...member, restartManifests: [] } },
      async (agents) => {
        const agent = agents.agents[0] as (typeof agents.agents)[number];
        agent.child.kill("SIGTERM");
        expect(await agent.exitCode).toBe(0);
        expect(agent.stderr()).not.toContain("FAILED");
        afterStop = (await agents.readStatus(node.memberName))?.status;
      },
    );
    expect(outcome.failed, messages(outcome.statuses)).toBe(false);
    const reported = outcome.statuses[0] as RestoreAgentStatus;
    expect(afterStop).toMatchObject({ phase: "start-apiserver", state: "done", message: reported.message });
  }, 60_000);

  it("reports done when stopped after the API answered ready, putting back a manifest it had parked", async () => {
    await parkApiServer(0);
    const plan = await planFor(s3, etcd, node, snapshot, "r-stopped-while-restarting");
    const agents = await startRestoreAgents({
      s3,
      plans: [{ ...plan, member: { ...plan.member, restartManifests: [hiddenManifestName] } }],
      initialPhase: "start-apiserver",
      // The component shows no process here, so its manifest stays parked for the whole grace period.
      env: { ...shortWaits, ETCD_RESTORE_AGENT_RESTART_GRACE_SECONDS: "30" },
    });
    try {
      const agent = agents.agents[0] as (typeof agents.agents)[number];
      await expect
        .poll(() => existsSync(join(node.parkedManifestDir, hiddenManifestName)), { timeout: 15_000 })
        .toBe(true);
      agent.child.kill("SIGTERM");
      expect(await agent.exitCode).toBe(0);
      expect((await agents.readStatus(node.memberName))?.status).toMatchObject({
        phase: "start-apiserver",
        state: "done",
        message: expect.stringMatching(
          /the API answered ready .*stopped by SIGTERM .*; put back hidden-component without waiting for it to stop$/,
        ),
      });
      expect(existsSync(join(node.manifestDir, hiddenManifestName))).toBe(true);
      expect(existsSync(join(node.parkedManifestDir, hiddenManifestName))).toBe(false);
    } finally {
      await agents.stop();
    }
  }, 60_000);

  it("asks once more when stopped between two readiness asks, and reports done if the API answers ready", async () => {
    // Ready a second after it starts; the agent asks again only after 30 s, long after the kill.
    await parkApiServer(1000);
    const plan = await planFor(s3, etcd, node, snapshot, "r-stopped-before-ready-seen");
    const agents = await startRestoreAgents({
      s3,
      plans: [{ ...plan, startTimeoutSeconds: 60 }],
      initialPhase: "start-apiserver",
      pollSeconds: "30",
      env: shortWaits,
    });
    try {
      const agent = agents.agents[0] as (typeof agents.agents)[number];
      await expect.poll(() => agent.stderr(), { timeout: 15_000 }).toContain("to answer ok");
      await expect.poll(() => etcd.supervisor.running(node.name, "kube-apiserver")).toBe(true);
      await sleep(1500);
      agent.child.kill("SIGTERM");
      expect(await agent.exitCode).toBe(0);
      expect((await agents.readStatus(node.memberName))?.status).toMatchObject({
        phase: "start-apiserver",
        state: "done",
        message: `kube-apiserver started; the API answered ready at ${node.apiServerReadyUrl} when the agent was stopped by SIGTERM (the kubelet, once the restored API serves), before it restarted anything; WARNING: ${schedulerManifestName} ${controllerManagerManifestName} not restarted: restart them by hand`,
      });
    } finally {
      await agents.stop();
    }
  }, 60_000);

  it("in a pod, reports done with a warning when the kubelet stops it before this node's API answered ready", async () => {
    // Another node's restored API server serves, behind the endpoint this node's kubelet uses: the kubelet
    // stops the agent pod it no longer finds there. etcd passed the barrier; the restore must stand.
    const { exitCode, status } = await stopDuringStartApiServer("r-stopped-in-pod", {
      ...shortWaits,
      ETCD_RESTORE_AGENT_RUNS_AS_POD: "1",
    });
    expect(exitCode).toBe(0);
    expect(status).toMatchObject({
      phase: "start-apiserver",
      state: "done",
      message: `kube-apiserver's manifest is back; the agent was stopped by SIGTERM before ${node.apiServerReadyUrl} answered ready (the kubelet stops agent pods once an API server of the restored cluster serves, maybe another node's): WARNING: this node's API readiness was not confirmed; ${schedulerManifestName} ${controllerManagerManifestName} not restarted: restart them by hand`,
    });
    expect(existsSync(join(node.manifestDir, apiServerManifestName))).toBe(true);
  }, 60_000);

  it("reports a stop in the middle of a phase as that phase's failure (outside a pod)", async () => {
    const { exitCode, status } = await stopDuringStartApiServer("r-stopped-mid-phase", shortWaits);
    expect(exitCode).toBe(1);
    expect(status).toMatchObject({
      phase: "start-apiserver",
      state: "failed",
      message: "agent stopped by SIGTERM during phase start-apiserver",
    });
  }, 60_000);
});

describe("restore agent following the URLs each plan renews", () => {
  let s3: LocalS3;
  let etcd: StaticPodEtcd;
  let snapshot: UploadedSnapshot;
  let node: StaticPodNode;

  beforeAll(async () => {
    [s3, etcd] = await Promise.all([startLocalS3(), startStaticPodEtcd({ members: 1 })]);
    node = etcd.nodes[0] as StaticPodNode;
    snapshot = await snapshotToS3(etcd, s3, "renewed-urls");
  });

  afterAll(async () => {
    await etcd?.stop();
    await s3?.stop();
  });

  /** Waits until s3rver refuses the URL as expired (it checks X-Amz-Date + X-Amz-Expires). */
  async function expectExpired(url: string) {
    await expect.poll(async () => (await fetch(url)).status, { timeout: 15_000, interval: 250 }).toBe(403);
  }

  it("writes its status through the status URL the next plan names, not the one it started with", async () => {
    const plan = await planFor(s3, etcd, node, snapshot, "r-renewed-status");
    const agents = await startRestoreAgents({ s3, plans: [plan], initialPhase: "prepare" });
    try {
      const prepared = await agents.waitForPhase("prepare");
      expect(prepared.failed, messages(prepared.statuses)).toBe(false);

      await agents.moveStatus("status-renewed.json");
      const finished = await agents.advance("finish");
      expect(finished.failed, messages(finished.statuses)).toBe(false);
      expect(await agents.agents[0]?.exitCode).toBe(0);

      const renewed = await agents.readStatus(node.memberName, "status-renewed.json");
      expect(renewed?.status).toMatchObject({ phase: "finish", state: "done" });
      expect(renewed?.status.log.join("\n")).toContain("took the renewed plan and status URLs from the plan");
      // The object the launch URL names kept the last status written before the switch.
      const launched = await agents.readStatus(node.memberName, "status.json");
      expect(launched?.status).toMatchObject({ phase: "prepare", state: "done" });
      expectNoSecrets(agents, [renewed?.text ?? "", launched?.text ?? ""]);
    } finally {
      await agents.stop();
    }
  });

  it("completes after the URLs it was started with expired, on the ones its plans renewed", async () => {
    const plan = await planFor(s3, etcd, node, snapshot, "r-renewed-expiry");
    const agents = await startRestoreAgents({
      s3,
      plans: [plan],
      initialPhase: "prepare",
      launchUrlSeconds: 5,
    });
    try {
      const agent = agents.agents[0] as (typeof agents.agents)[number];
      const prepared = await agents.waitForPhase("prepare");
      expect(prepared.failed, messages(prepared.statuses)).toBe(false);
      await expectExpired(agent.planUrl);
      await expectExpired(agent.statusUrl);
      // A few more plan reads, all past the launch URLs' expiry.
      await sleep(1000);
      expect(agent.child.exitCode).toBeNull();

      const finished = await agents.advance("finish");
      expect(finished.failed, messages(finished.statuses)).toBe(false);
      expect(await agent.exitCode).toBe(0);
    } finally {
      await agents.stop();
    }
  });

  it("fails on its expired launch URL when no plan renews it (what the renewal prevents)", async () => {
    const plan = await planFor(s3, etcd, node, snapshot, "r-not-renewed");
    const agents = await startRestoreAgents({
      s3,
      plans: [plan],
      initialPhase: "prepare",
      launchUrlSeconds: 5,
      renewUrls: false,
    });
    try {
      const agent = agents.agents[0] as (typeof agents.agents)[number];
      await expectExpired(agent.planUrl);
      const exitCode = await Promise.race([agent.exitCode, sleep(15_000).then(() => "still running")]);
      expect(exitCode).toBe(1);
      expect(agent.stderr()).toContain("the plan URL was refused (HTTP 403)");
    } finally {
      await agents.stop();
    }
  });
});

describe("restore agent asking etcd's health where kubeadm serves it", () => {
  let s3: LocalS3;
  let etcd: StaticPodEtcd;
  let node: StaticPodNode;
  let certificates: TestCertificates;
  let clientUrl: string;
  // Only the start phase runs here: the snapshot is never downloaded.
  const snapshot: UploadedSnapshot = {
    key: "snapshots/unused.db",
    bytes: 512 + 32,
    sha256: "0".repeat(64),
    revision: 1,
  };

  beforeAll(async () => {
    [s3, etcd] = await Promise.all([startLocalS3(), startStaticPodEtcd({ members: 1 })]);
    node = etcd.nodes[0] as StaticPodNode;
    const pki = join(etcd.baseDir, "pki");
    await mkdir(pki);
    certificates = await createTestCertificates(pki);
    // The same port, served over mutual TLS as kubeadm's etcd serves its clients.
    clientUrl = node.clientUrl.replace("http://", "https://");
  });

  afterAll(async () => {
    await etcd?.stop();
    await s3?.stop();
  });

  /**
   * Stops etcd and parks a manifest shaped like kubeadm's (clients over mutual TLS with etcd's own server
   * certificate, plus `extraArgs`), then has an agent's start phase bring it back with a plan that names
   * no healthUrl.
   */
  async function startAsKubeadm(extraArgs: string[]) {
    await rm(join(node.manifestDir, etcdManifestName));
    await expect.poll(() => etcd.supervisor.running(node.name, "etcd")).toBe(false);
    await writeEtcdManifest({
      manifestDir: node.parkedManifestDir,
      fileName: etcdManifestName,
      name: node.memberName,
      dataDir: node.dataDir,
      clientUrl,
      peerUrl: node.peerUrl,
      initialCluster: etcd.initialCluster,
      terminationGracePeriodSeconds: 1,
      extraArgs: [
        "--client-cert-auth=true",
        `--trusted-ca-file=${certificates.caFile}`,
        `--cert-file=${certificates.serverCertFile}`,
        `--key-file=${certificates.serverKeyFile}`,
        ...extraArgs,
      ],
    });
    const plan = await planFor(s3, etcd, node, snapshot, `r-health-${extraArgs.length}`);
    expect(plan.member.healthUrl).toBeUndefined();
    const agents = await startRestoreAgents({
      s3,
      plans: [{ ...plan, member: { ...plan.member, clientUrl } }],
      initialPhase: "start",
    });
    try {
      const outcome = await agents.waitForPhase("start", 45_000);
      expect(outcome.failed, messages(outcome.statuses)).toBe(false);
      return outcome.statuses[0] as RestoreAgentStatus;
    } finally {
      await agents.stop();
    }
  }

  it("asks /health on the plain-http metrics listener, which needs no client certificate", async () => {
    const metricsUrl = `http://127.0.0.1:${await findFreePort()}`;
    const status = await startAsKubeadm([`--listen-metrics-urls=${metricsUrl}`]);
    expect(status.message).toBe(`etcd started and healthy at ${metricsUrl}/health`);
    expect(status.log.join("\n")).toContain(
      `asking etcd's health at ${metricsUrl}/health (etcd's --listen-metrics-urls, which needs no TLS)`,
    );
    // The client URL itself refuses a caller without a client certificate: what the agent used to ask.
    await expect(
      promisify(execFile)("curl", [
        "--silent",
        "--fail",
        "--cacert",
        certificates.caFile,
        `${clientUrl}/health`,
      ]),
    ).rejects.toThrow();
  }, 60_000);

  it("without a metrics listener, asks the client URL with etcd's own CA, certificate and key", async () => {
    const status = await startAsKubeadm([]);
    expect(status.message).toBe(`etcd started and healthy at ${clientUrl}/health`);
    expect(status.log.join("\n")).toContain(
      "(the plan's clientUrl, with etcd's own --trusted-ca-file, --cert-file and --key-file)",
    );
  }, 60_000);
});
