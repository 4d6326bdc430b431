import { createHash } from "node:crypto";
// The barrier steps' rolling URLs: every plan written (prepare, each later phase, rollback) names URLs
// signed at that write, with the lifetimes agent-url-lifetimes.ts argues for, over an in-memory bucket.
import {
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { restoreLeaseSeconds, silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import { LeaseHeldError, SnapshotNotFoundError } from "../../lambdas/core/errors.js";
import {
  launchUrlSeconds,
  maxPhaseTimeoutSeconds,
  planUrlSeconds,
} from "../../lambdas/core/restore/agent-url-lifetimes.js";
import type { RestoreDependencies } from "../../lambdas/core/restore/restore-dependencies.js";
import type { RestoreSnapshot } from "../../lambdas/core/restore/restore-payloads.js";
import { parsePlan, type RestoreAgentStatus, renderStatus } from "../../lambdas/core/restore/restore-plan.js";
import {
  checkRestoreAgents,
  setRestorePhase,
  writeRestorePlans,
} from "../../lambdas/core/restore/restore-plans-step.js";
import {
  agentStartWaitSeconds,
  agentStopWaitSeconds,
  agentWaitSeconds,
} from "../../lambdas/core/restore/restore-timeouts.js";

const cluster = "prod-eu";
const executionArn = "arn:aws:states:eu-west-1:111122223333:execution:restore:r-1";
const members = [
  { name: "cp-1", dataDir: "/var/lib/etcd", manifestDir: "/etc/kubernetes/manifests", n: 1 },
  { name: "cp-2", dataDir: "/var/lib/etcd", manifestDir: "/etc/kubernetes/manifests", n: 2 },
].map(({ n, ...member }) => ({
  ...member,
  instanceId: `i-000${n}`,
  clientUrl: `https://10.0.0.${n}:2379`,
  peerUrl: `https://10.0.0.${n}:2380`,
}));
const snapshot: RestoreSnapshot = {
  sourceCluster: cluster,
  snapshotId: "20261124T010000000Z-000001",
  bucket: "snapshots",
  key: "etcd/prod-eu/2026/11/24/01.db",
  versionId: "v-42",
  sha256: "e9aa53f5bf7490cadd68d3a6eaa8db29ded5480beb67df0c9087e1a3e1d8ac9e",
  bytes: 20480 + 32,
  revision: 4242,
  liveKeyCount: 10,
};

interface SignRequest {
  key: string;
  method: "GET" | "PUT";
  versionId?: string;
  expiresInSeconds: number;
}

/** An in-memory bucket, and a signer whose URLs say what was signed and when (a counter stands for time). */
function fakeDependencies(phaseTimeoutSeconds?: number, layoutExtras: Record<string, unknown> = {}) {
  const objects = new Map<string, string>();
  const renewals: Array<{ cluster: string; owner: string; ttlSeconds: number }> = [];
  const warnings: string[] = [];
  const lease = { lost: false };
  /** The catalogued snapshot version is in the bucket, until a test deletes it. */
  const stored = { present: true };
  const signed: Array<SignRequest & { url: string }> = [];
  /** The key of every PutObject, in order: a key put twice appears twice. */
  const puts: string[] = [];
  const s3 = {
    send: async (command: unknown) => {
      if (command instanceof PutObjectCommand) {
        puts.push(command.input.Key as string);
        objects.set(command.input.Key as string, command.input.Body as string);
        return {};
      }
      if (command instanceof HeadObjectCommand || command instanceof GetObjectTaggingCommand) {
        const { Key, VersionId } = command.input;
        if (!stored.present || Key !== snapshot.key || VersionId !== snapshot.versionId) {
          throw Object.assign(new Error("no such version"), { name: "NoSuchVersion" });
        }
        return command instanceof HeadObjectCommand
          ? { Metadata: {}, ContentLength: snapshot.bytes }
          : { TagSet: [{ Key: "sha256", Value: snapshot.sha256 }] };
      }
      if (command instanceof GetObjectCommand) {
        const text = objects.get(command.input.Key as string);
        if (text === undefined) throw Object.assign(new Error("no such key"), { name: "NoSuchKey" });
        return { Body: { transformToString: async () => text } };
      }
      throw new Error("unexpected S3 command");
    },
  } as unknown as S3Client;
  const targets = parseTargetsFile({
    prefix: "etcd",
    targets: [
      {
        name: cluster,
        schedule: "rate(1 hour)",
        restore: {
          members: members.map(({ name, instanceId, clientUrl, peerUrl }) => ({
            name,
            instanceId,
            clientUrl,
            peerUrl,
          })),
          ...(phaseTimeoutSeconds ? { phaseTimeoutSeconds } : {}),
          ...layoutExtras,
        },
      },
    ],
  });
  const dependencies = {
    s3,
    bucket: "snapshots",
    prefix: "etcd",
    loadTargets: async () => targets,
    loadAgentScript: async () => "#!/usr/bin/env bash\necho agent\n",
    presign: async (request: SignRequest) => {
      const url = `https://snapshots.s3.eu-west-1.amazonaws.com/${request.key}?X-Amz-Expires=${request.expiresInSeconds}&X-Amz-Signature=s${signed.length}`;
      signed.push({ ...request, url });
      return url;
    },
    now: () => new Date("2026-11-24T02:00:00Z"),
    reporter: { ...silentReporter, warn: (message: string) => warnings.push(message) },
    leases: {
      renewLease: async (request: { cluster: string; owner: string; ttlSeconds: number }) => {
        if (lease.lost) throw new LeaseHeldError(`${request.owner} cannot renew: another execution holds it`);
        renewals.push({ cluster: request.cluster, owner: request.owner, ttlSeconds: request.ttlSeconds });
        return { heldUntil: "2026-11-24T06:15:00.000Z" };
      },
    },
  } as unknown as RestoreDependencies;
  const planOf = (member: string) =>
    parsePlan(objects.get(`etcd/${cluster}/_restores/r-1/${member}/plan.txt`) ?? "");
  /** Stores the status an agent would PUT for `member`. */
  const reportStatus = (member: string, status: Partial<RestoreAgentStatus>) =>
    objects.set(
      `etcd/${cluster}/_restores/r-1/${member}/status.json`,
      renderStatus({
        restoreId: "r-1",
        member,
        phase: "prepare",
        state: "working",
        message: "",
        updatedAt: "2026-11-24T02:00:00Z",
        log: [],
        ...status,
      }),
    );
  return { dependencies, signed, planOf, reportStatus, renewals, warnings, lease, objects, puts, stored };
}

const input = { cluster, snapshotId: snapshot.snapshotId };

describe("agent launch", () => {
  it("writes no plan when the snapshot version is gone since validation (a prune that began before its hold)", async () => {
    const { dependencies, puts, signed, stored } = fakeDependencies();
    stored.present = false;
    await expect(writeRestorePlans(dependencies, input, executionArn, snapshot, members)).rejects.toThrow(
      new SnapshotNotFoundError(
        `snapshot ${snapshot.snapshotId} is catalogued, but s3://snapshots/${snapshot.key} version v-42 does not exist`,
      ),
    );
    expect(puts).toEqual([]);
    expect(signed).toEqual([]);
  });

  it("stages the script once and has each node fetch it, check its sha256 and run it", async () => {
    const { dependencies, objects, signed, puts } = fakeDependencies();
    const script = await dependencies.loadAgentScript();
    const { agents } = await writeRestorePlans(dependencies, input, executionArn, snapshot, members);
    expect(objects.get("etcd/prod-eu/_restores/r-1/agent.sh")).toBe(script);
    // Once for the whole restore, not once per member: put once and signed once.
    expect(puts.filter((key) => key.endsWith("/agent.sh"))).toEqual(["etcd/prod-eu/_restores/r-1/agent.sh"]);
    expect(signed.filter((request) => request.key.endsWith("/agent.sh"))).toHaveLength(1);
    const scriptUrl = signed.find((request) => request.key.endsWith("/agent.sh"));
    expect(scriptUrl).toMatchObject({ method: "GET", expiresInSeconds: launchUrlSeconds(900) });
    const sha256 = createHash("sha256").update(script).digest("hex");
    expect(agents).toHaveLength(members.length);
    expect(agents.map((agent) => agent.member)).toEqual(members.map((member) => member.name));
    for (const agent of agents) {
      const commands = agent.commands.join("\n");
      expect(commands).toContain(scriptUrl?.url);
      expect(commands).toContain(`echo '${sha256}  /var/tmp/etcd-restore-agent-r-1-`);
      expect(commands).not.toContain("echo agent");
      expect(agent.commands[0]).toBe("set -e");
    }
  });

  it("keeps the launch small whatever the script's size: the state's data holds every member's", async () => {
    const { dependencies } = fakeDependencies();
    const large = {
      ...dependencies,
      loadAgentScript: async () => `#!/usr/bin/env bash\n${"# a comment\n".repeat(6000)}`,
    };
    const { agents } = await writeRestorePlans(large, input, executionArn, snapshot, members);
    expect(agents).toHaveLength(members.length);
    expect(JSON.stringify(agents).length).toBeLessThan(6000);
  });

  it("writes each member's script to a file of its own, so members sharing a host never rewrite one another's", async () => {
    const { dependencies } = fakeDependencies();
    const { agents } = await writeRestorePlans(dependencies, input, executionArn, snapshot, members);
    expect(agents).toHaveLength(members.length);
    const scriptPaths = agents.map((agent) => / --output (\S+)$/.exec(agent.commands[1] ?? "")?.[1]);
    expect(scriptPaths).toEqual([
      "/var/tmp/etcd-restore-agent-r-1-cp-1.sh",
      "/var/tmp/etcd-restore-agent-r-1-cp-2.sh",
    ]);
    for (const [index, agent] of agents.entries()) {
      // Checked, opened, unlinked, then run from the open descriptor: no file stays on the node.
      expect(agent.commands.slice(-3)).toEqual([
        `exec 9<${scriptPaths[index]}`,
        `rm -f ${scriptPaths[index]}`,
        expect.stringMatching(/^exec bash \/dev\/fd\/9 '/),
      ]);
    }
  });
});

describe("the restore's lease", () => {
  it("is extended at every phase write, so that phases running to their timeouts never outlast it", async () => {
    const { dependencies, renewals } = fakeDependencies();
    await writeRestorePlans(dependencies, input, executionArn, snapshot, members);
    for (const phase of ["prepare", "stop-apiserver", "stop"]) {
      await setRestorePhase(dependencies, input, executionArn, "r-1", phase);
    }
    expect(renewals).toEqual(
      Array.from({ length: 3 }, () => ({ cluster, owner: executionArn, ttlSeconds: restoreLeaseSeconds })),
    );
  });

  it("lost to another owner, is reported and does not stop the phase (it may be the rollback)", async () => {
    const { dependencies, warnings, lease, planOf } = fakeDependencies();
    await writeRestorePlans(dependencies, input, executionArn, snapshot, members);
    lease.lost = true;
    await setRestorePhase(dependencies, input, executionArn, "r-1", "rollback");
    expect(planOf("cp-1").phase).toBe("rollback");
    expect(warnings).toEqual(["the restore no longer holds the cluster's lease; going on with the phase"]);
  });
});

describe("rolling agent URLs", () => {
  it("launches each agent with URLs that outlive the prepare phase, and plans with hour-long URLs", async () => {
    const { dependencies, signed, planOf } = fakeDependencies();
    const { agents } = await writeRestorePlans(dependencies, input, executionArn, snapshot, members);

    const launchCommand = agents[0]?.commands.at(-1) ?? "";
    const launched = signed.filter((request) => launchCommand.includes(request.url));
    expect(launched.map(({ key, method }) => [key, method])).toEqual([
      ["etcd/prod-eu/_restores/r-1/cp-1/plan.txt", "GET"],
      ["etcd/prod-eu/_restores/r-1/cp-1/status.json", "PUT"],
    ]);
    // 900 s of prepare, plus the steps around it.
    for (const request of launched) expect(request.expiresInSeconds).toBe(launchUrlSeconds(900));
    expect(launchUrlSeconds(900)).toBe(1500);

    const plan = planOf("cp-1");
    const inPlan = signed.filter((request) =>
      [plan.snapshot.url, plan.planUrl, plan.statusUrl].includes(request.url),
    );
    expect(inPlan).toEqual([
      expect.objectContaining({ key: snapshot.key, method: "GET", versionId: "v-42" }),
      expect.objectContaining({ key: "etcd/prod-eu/_restores/r-1/cp-1/plan.txt", method: "GET" }),
      expect.objectContaining({ key: "etcd/prod-eu/_restores/r-1/cp-1/status.json", method: "PUT" }),
    ]);
    for (const request of inPlan) expect(request.expiresInSeconds).toBe(planUrlSeconds);
    expect(planUrlSeconds).toBe(3600);
  });

  it("signs the snapshot, plan and status URLs anew in every plan it writes, rollback included", async () => {
    const { dependencies, signed, planOf } = fakeDependencies();
    await writeRestorePlans(dependencies, input, executionArn, snapshot, members);
    const seen = new Set<string>();
    const urlsOf = (member: string) => {
      const plan = planOf(member);
      return [plan.snapshot.url, plan.planUrl, plan.statusUrl];
    };
    for (const member of members) for (const url of urlsOf(member.name)) seen.add(url as string);

    for (const phase of ["prepare", "stop-apiserver", "stop", "restore", "rollback"]) {
      await setRestorePhase(dependencies, input, executionArn, "r-1", phase);
      for (const member of members) {
        const plan = planOf(member.name);
        expect(plan.phase).toBe(phase);
        for (const url of urlsOf(member.name)) {
          expect(seen.has(url as string), `${phase} ${member.name}: ${url} was signed before`).toBe(false);
          seen.add(url as string);
          const request = signed.find((entry) => entry.url === url);
          expect(request?.expiresInSeconds).toBe(planUrlSeconds);
        }
        expect(signed.find((entry) => entry.url === plan.snapshot.url)?.versionId).toBe("v-42");
        expect(signed.find((entry) => entry.url === plan.statusUrl)).toMatchObject({
          key: `etcd/prod-eu/_restores/r-1/${member.name}/status.json`,
          method: "PUT",
        });
      }
    }
  });

  it("names a staged restore tool by a URL of its own, signed anew with every plan, and its sha256", async () => {
    const sha256 = "c".repeat(64);
    const { dependencies, signed, planOf } = fakeDependencies(undefined, {
      toolObject: { name: "etcdutl-v3.5.17-linux-arm64", sha256 },
    });
    await writeRestorePlans(dependencies, input, executionArn, snapshot, members);
    const first = planOf("cp-1").tool;
    expect(first?.sha256).toBe(sha256);
    expect(signed.find((entry) => entry.url === first?.url)).toEqual(
      expect.objectContaining({ key: "etcd/_tools/etcdutl-v3.5.17-linux-arm64", method: "GET" }),
    );
    expect(planOf("cp-1").etcdutlPath).toBeUndefined();

    await setRestorePhase(dependencies, input, executionArn, "r-1", "restore");
    const renewed = planOf("cp-1").tool;
    expect(renewed?.sha256).toBe(sha256);
    expect(renewed?.url).not.toBe(first?.url);
    expect(signed.find((entry) => entry.url === renewed?.url)?.expiresInSeconds).toBe(planUrlSeconds);
  });

  it("gives the launch URLs a longer phase timeout's life, never beyond the hour a session can sign", async () => {
    const { dependencies, signed } = fakeDependencies(maxPhaseTimeoutSeconds);
    const { agents } = await writeRestorePlans(dependencies, input, executionArn, snapshot, members);
    const launchCommand = agents[1]?.commands.at(-1) ?? "";
    const launched = signed.filter((request) => launchCommand.includes(request.url));
    expect(launched.map((request) => request.expiresInSeconds)).toEqual([3000, 3000]);
    expect(launchUrlSeconds(10_000)).toBe(3600);
  });

  it("bounds the agents' waits for etcd and kube-apiserver by the phase, so their reason beats the deadline", async () => {
    const short = fakeDependencies(120);
    await writeRestorePlans(short.dependencies, input, executionArn, snapshot, members);
    // Two polls (5 s by default) and ten seconds before the phase's deadline.
    expect(short.planOf("cp-1")).toMatchObject({ stopTimeoutSeconds: 100, startTimeoutSeconds: 100 });
    const usual = fakeDependencies();
    await writeRestorePlans(usual.dependencies, input, executionArn, snapshot, members);
    expect(usual.planOf("cp-1")).toMatchObject({
      stopTimeoutSeconds: agentStopWaitSeconds,
      startTimeoutSeconds: agentStartWaitSeconds,
    });
    const longStart = fakeDependencies(1800, { startTimeoutSeconds: 1200 });
    await writeRestorePlans(longStart.dependencies, input, executionArn, snapshot, members);
    expect(longStart.planOf("cp-1")).toMatchObject({
      stopTimeoutSeconds: agentStopWaitSeconds,
      startTimeoutSeconds: 1200,
    });
    expect(
      agentWaitSeconds({
        phaseTimeoutSeconds: 30,
        pollSeconds: 60,
        stopTimeoutSeconds: 120,
        startTimeoutSeconds: 300,
      }),
    ).toEqual({ stopTimeoutSeconds: 10, startTimeoutSeconds: 10 });
  });

  it("refuses a phase timeout the hour-long URLs could not bridge", () => {
    const targets = (phaseTimeoutSeconds: number) => ({
      targets: [
        {
          name: cluster,
          schedule: "rate(1 hour)",
          restore: {
            members: [
              { name: "cp-1", instanceId: "i-0001", clientUrl: "https://a:2379", peerUrl: "https://a:2380" },
            ],
            phaseTimeoutSeconds,
          },
        },
      ],
    });
    expect(maxPhaseTimeoutSeconds).toBe(2400);
    expect(() => parseTargetsFile(targets(2400))).not.toThrow();
    expect(() => parseTargetsFile(targets(2401))).toThrow(/phaseTimeoutSeconds/);
  });
});

describe("etcd's health URL in the plans", () => {
  it("is left to the agent (which reads etcd's manifest) unless the targets file names one", async () => {
    const { dependencies, planOf } = fakeDependencies();
    await writeRestorePlans(dependencies, input, executionArn, snapshot, members);
    expect(planOf("cp-1").member.healthUrl).toBeUndefined();
    expect(planOf("cp-1").member.healthTls).toBeUndefined();
  });

  it("carries the target's healthUrl, or a member's own, as an override", async () => {
    const { dependencies, planOf } = fakeDependencies(undefined, {
      healthUrl: "http://127.0.0.1:2381/health",
      members: members.map(({ name, instanceId, clientUrl, peerUrl }) => ({
        name,
        instanceId,
        clientUrl,
        peerUrl,
        ...(name === "cp-2" ? { healthUrl: "http://127.0.0.1:12381/health" } : {}),
      })),
    });
    await writeRestorePlans(dependencies, input, executionArn, snapshot, members);
    expect(planOf("cp-1").member.healthUrl).toBe("http://127.0.0.1:2381/health");
    expect(planOf("cp-2").member.healthUrl).toBe("http://127.0.0.1:12381/health");
  });
});

describe("kube-apiserver's readiness URL in the plans", () => {
  it("is left to the agent (which reads kube-apiserver's manifest) unless the targets file names one", async () => {
    const { dependencies, planOf } = fakeDependencies();
    await writeRestorePlans(dependencies, input, executionArn, snapshot, members);
    expect(planOf("cp-1").member.apiServerReadyUrl).toBeUndefined();
    expect(planOf("cp-1").member.checkApiReadiness).toBeUndefined();
  });

  it("carries the target's URL, and none as no check at all, a member's own setting first", async () => {
    const { dependencies, planOf } = fakeDependencies(undefined, {
      apiServerReadyUrl: "none",
      members: members.map(({ name, instanceId, clientUrl, peerUrl }) => ({
        name,
        instanceId,
        clientUrl,
        peerUrl,
        ...(name === "cp-2" ? { apiServerReadyUrl: "https://10.0.1.11:8443/readyz" } : {}),
      })),
    });
    await writeRestorePlans(dependencies, input, executionArn, snapshot, members);
    expect(planOf("cp-1").member).toMatchObject({ checkApiReadiness: false });
    expect(planOf("cp-1").member.apiServerReadyUrl).toBeUndefined();
    expect(planOf("cp-2").member.apiServerReadyUrl).toBe("https://10.0.1.11:8443/readyz");
    expect(planOf("cp-2").member.checkApiReadiness).toBeUndefined();
  });
});

describe("the barrier check of the agents' statuses", () => {
  const before = "2026-11-24T02:10:00.000Z";
  const passed = "2026-11-24T01:50:00.000Z";

  it("fails a phase as soon as one agent reports it failed", async () => {
    const { dependencies, reportStatus } = fakeDependencies();
    reportStatus("cp-1", { phase: "restore", state: "failed", message: "sha256 mismatch" });
    reportStatus("cp-2", { phase: "restore", state: "done" });
    const check = await checkRestoreAgents(dependencies, input, "r-1", "restore", before);
    expect(check.state).toBe("failed");
    expect(check.summary).toContain("cp-1: restore failed — sha256 mismatch");
  });

  it("in the rollback, waits for the agent whose phase failed: it stays to roll back", async () => {
    const { dependencies, reportStatus } = fakeDependencies();
    reportStatus("cp-1", { phase: "restore", state: "failed", message: "sha256 mismatch" });
    reportStatus("cp-2", { phase: "rollback", state: "done" });
    const waiting = await checkRestoreAgents(dependencies, input, "r-1", "rollback", before);
    expect(waiting.state).toBe("working");
    expect(waiting.statuses.map((status) => status.state)).toEqual(["working", "done"]);

    reportStatus("cp-1", { phase: "rollback", state: "done", message: "rolled back" });
    expect((await checkRestoreAgents(dependencies, input, "r-1", "rollback", before)).state).toBe("done");
  });

  it("in the rollback, ends on the deadline when the failed agent never reports it, and on its failure", async () => {
    const { dependencies, reportStatus } = fakeDependencies();
    reportStatus("cp-1", { phase: "restore", state: "failed" });
    reportStatus("cp-2", { phase: "rollback", state: "done" });
    const late = await checkRestoreAgents(dependencies, input, "r-1", "rollback", passed);
    expect(late.state).toBe("failed");
    expect(late.summary).toMatch(/^phase rollback passed its deadline/);

    reportStatus("cp-1", { phase: "rollback", state: "failed", message: "etcd did not answer healthy" });
    expect((await checkRestoreAgents(dependencies, input, "r-1", "rollback", before)).state).toBe("failed");
  });
});

describe("the finish barrier", () => {
  it("counts agents that vanished after reporting start-apiserver done as done", async () => {
    const { dependencies, reportStatus } = fakeDependencies();
    reportStatus("cp-1", { phase: "start-apiserver", state: "done", message: "kube-apiserver started" });
    reportStatus("cp-2", { phase: "finish", state: "done", message: "finished" });
    const check = await checkRestoreAgents(dependencies, input, "r-1", "finish", "2026-11-24T02:10:00.000Z");
    expect(check.state).toBe("done");
  });

  it("says first, for the success notice, on which members no API readiness check ran", async () => {
    const { dependencies, reportStatus } = fakeDependencies();
    reportStatus("cp-1", { phase: "finish", state: "done", message: "finished", apiReadiness: "ready" });
    reportStatus("cp-2", {
      phase: "finish",
      state: "done",
      message: "finished",
      apiReadiness: "not checked",
    });
    const check = await checkRestoreAgents(dependencies, input, "r-1", "finish", "2026-11-24T02:10:00.000Z");
    expect(check.summary).toBe(
      "API readiness not checked on cp-2 (the member's message says why); cp-1: finish done — finished; cp-2: finish done — finished",
    );
  });
});
