// What on-call reads when a restore fails after the nodes were touched: above all, whether the rollback
// finished, since the runbook's manual rollback is for "rollback incomplete" only. And, either way, how
// long it took and how long the Kubernetes API was down.
import { describe, expect, it } from "vitest";
import { silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { composeRestoreMessage } from "../../lambdas/core/restore/compose-restore-message-step.js";
import type { RestoreDependencies } from "../../lambdas/core/restore/restore-dependencies.js";
import { formatDuration } from "../../lambdas/core/restore/restore-timings.js";

const executionArn = "arn:aws:states:eu-west-1:111122223333:execution:restore:r-1";
const input = { cluster: "prod-eu", snapshotId: "20261125T010000000Z-000001" };
const phaseFailure = {
  Error: "RestoreAgentFailedError",
  Cause: JSON.stringify({ errorMessage: "cp-2: etcd did not answer healthy" }),
};

/** The failure notice of a restore that failed after approval, its phases' plans written at `phases`. */
async function composeFailedAfterApproval(phases: Record<string, string>, rest: Record<string, unknown>) {
  const { dependencies, metrics } = fakeDependencies();
  const composed = await composeRestoreMessage(
    dependencies,
    input,
    executionArn,
    "failed",
    {
      lease: { acquired: true, acquiredAt: approvedAt },
      phases: timestamps(phases),
      failure: phaseFailure,
      ...rest,
    },
    executionStartedAt,
  );
  return { ...composed, metrics };
}

/** When the notice is composed, unless a test says otherwise. */
const composedAt = "2026-11-25T02:30:00.000Z";

function fakeDependencies(now = composedAt) {
  const released: string[] = [];
  const metrics: Array<[string, number]> = [];
  const dependencies = {
    operatorCliFlags: "",
    reporter: {
      ...silentReporter,
      metric: (name: string, _unit: string, value: number) => metrics.push([name, value]),
    },
    now: () => new Date(now),
    leases: {
      releaseLease: async ({ owner }: { owner: string }) => {
        released.push(owner);
        return { released: true };
      },
    },
  } as unknown as RestoreDependencies;
  return { dependencies, released, metrics };
}

describe("composeRestoreMessage after a failure on the nodes", () => {
  it("says rolled back and releases the lease when every agent rolled back", async () => {
    const { dependencies, released } = fakeDependencies();
    const { subject, message } = await composeRestoreMessage(dependencies, input, executionArn, "failed", {
      lease: {},
      failure: phaseFailure,
      rollbackAgents: { state: "done", summary: "cp-1, cp-2: rolled back" },
    });
    expect(subject).toBe("etcd-backup: restore of prod-eu FAILED, rolled back");
    expect(message).toContain(
      "Rollback:  old data dirs swapped back and etcd restarted — cp-1, cp-2: rolled back",
    );
    expect(message).toContain("Lease:     lease released");
    expect(released).toEqual([executionArn]);
  });

  it("says rollback incomplete, keeps the phase's error and the lease, when the rollback could not be started", async () => {
    const { dependencies, released } = fakeDependencies();
    const { subject, message } = await composeRestoreMessage(dependencies, input, executionArn, "failed", {
      lease: {},
      failure: phaseFailure,
      rollbackFailure: {
        Error: "StorageUnavailableError",
        Cause: JSON.stringify({ errorMessage: "writing the rollback plans failed: SlowDown" }),
      },
    });
    expect(subject).toBe("etcd-backup: restore of prod-eu FAILED, rollback incomplete");
    expect(message).toContain("Error:     RestoreAgentFailedError: cp-2: etcd did not answer healthy");
    expect(message).toContain(
      "Rollback:  INCOMPLETE — it could not be driven (StorageUnavailableError: writing the rollback plans failed: SlowDown): do the manual rollback (docs/restore.md) on every member",
    );
    expect(message).toMatch(
      /Lease: {5}kept, so that no backup runs .* lapses by itself 4 h 15 min after the restore's last phase/,
    );
    expect(released).toEqual([]);
  });

  it("keeps the lease when an agent's rollback failed too", async () => {
    const { dependencies, released } = fakeDependencies();
    const { subject } = await composeRestoreMessage(dependencies, input, executionArn, "failed", {
      lease: {},
      failure: phaseFailure,
      rollbackAgents: { state: "failed", summary: "cp-2: etcd still accepts connections" },
    });
    expect(subject).toBe("etcd-backup: restore of prod-eu FAILED, rollback incomplete");
    expect(released).toEqual([]);
  });
});

describe("composeRestoreMessage after a restore that succeeded", () => {
  it("says when the lease could not be released, and when backups resume", async () => {
    const { dependencies } = fakeDependencies();
    const { subject, message } = await composeRestoreMessage(dependencies, input, executionArn, "succeeded", {
      lease: {},
      releaseFailure: {
        Error: "CatalogueUnavailableError",
        Cause: JSON.stringify({ errorMessage: "UpdateItem throttled" }),
      },
    });
    expect(subject).toBe("etcd-backup: restore of prod-eu succeeded");
    expect(message).toContain(
      "Lease:     could not be released (CatalogueUnavailableError: UpdateItem throttled); scheduled backups resume when it lapses, 4 h 15 min after the restore's last phase",
    );
  });
});

/** The timestamps restore.asl.json keeps: the lease after approval, each phase's, the health check's. */
function timestamps(phases: Record<string, string>) {
  return Object.fromEntries(
    Object.entries(phases).map(([key, startedAt]) => [key, { phase: key, deadline: "later", startedAt }]),
  );
}
const executionStartedAt = "2026-11-25T02:00:00.000Z";
const approvedAt = "2026-11-25T02:20:00.000Z";
const throughEveryBarrier = {
  lease: { acquired: true, acquiredAt: approvedAt },
  phases: timestamps({
    prepare: "2026-11-25T02:21:02.000Z",
    stop_apiserver: "2026-11-25T02:21:05.000Z",
    stop: "2026-11-25T02:21:09.000Z",
    restore: "2026-11-25T02:21:14.500Z",
    start: "2026-11-25T02:23:26.000Z",
    start_apiserver: "2026-11-25T02:23:33.000Z",
    finish: "2026-11-25T02:25:36.000Z",
  }),
  health: { healthy: true, summary: "1 member(s) healthy", startedAt: "2026-11-25T02:23:32.000Z" },
};

describe("composeRestoreMessage's timings", () => {
  it("counts the restore's own work from approval, and the outage from the API servers' stop until start-apiserver's barrier passed", async () => {
    const { dependencies, metrics } = fakeDependencies();
    const { message, timings } = await composeRestoreMessage(
      dependencies,
      input,
      executionArn,
      "succeeded",
      throughEveryBarrier,
      executionStartedAt,
    );
    expect(message).toContain(
      "Took:      10 min 0 s after approval; 30 min 0 s since the execution started, the wait for approval included",
    );
    expect(message).toContain(
      "Outage:    4 min 31 s without the Kubernetes API, from the stop-apiserver barrier until start-apiserver's had every API server back",
    );
    expect(message).toContain(
      "Phases:    safety snapshot 1 min 2 s, prepare 3.0 s, stop-apiserver 4.0 s, stop-etcd 5.5 s, restore 2 min 11 s, start-etcd 6.0 s, health check 1.0 s, start-apiserver 2 min 3 s, finish 4 min 24 s",
    );
    // The same in figures, for the execution's output; the phases add up to the time since approval.
    expect(timings).toMatchObject({ totalMs: 1_800_000, sinceApprovalMs: 600_000, outageMs: 271_000 });
    expect(timings.phases.reduce((sum, { ms }) => sum + ms, 0)).toBe(timings.sinceApprovalMs);
    // And as metrics, per cluster.
    expect(metrics).toEqual([
      ["RestoreSucceeded", 1],
      ["RestoreDuration", 600_000],
      ["RestoreOutage", 271_000],
    ]);
    // Said before the lease and the execution, after what the restore did.
    const lines = message.split("\n");
    expect(lines.findIndex((line) => line.startsWith("Took:"))).toBeLessThan(
      lines.findIndex((line) => line.startsWith("Execution:")),
    );
  });

  it("after a rollback, says since when the API servers were stopped and that the rollback started them again", async () => {
    const { message, timings, metrics } = await composeFailedAfterApproval(
      {
        prepare: "2026-11-25T02:21:02.000Z",
        stop_apiserver: "2026-11-25T02:21:05.000Z",
        stop: "2026-11-25T02:21:09.000Z",
        restore: "2026-11-25T02:21:14.000Z",
      },
      {
        rollback: { phase: "rollback", deadline: "later", startedAt: "2026-11-25T02:24:00.000Z" },
        rollbackAgents: { state: "done", summary: "cp-1: rolled back" },
      },
    );
    expect(message).toContain(
      "Outage:    the API servers were told to stop at 2026-11-25T02:21:05.000Z, 8 min 55 s before this notice; the rollback started them again, without waiting for them to answer ready",
    );
    expect(message).toContain(
      "Phases:    safety snapshot 1 min 2 s, prepare 3.0 s, stop-apiserver 4.0 s, stop-etcd 5.0 s, restore 2 min 46 s, rollback 6 min 0 s",
    );
    expect(timings.outageEnded).toBe(false);
    // A failure's times are the time to fail: no duration or outage metric, only the failure's count.
    expect(metrics).toEqual([["RestoreFailed", 1]]);
  });

  it("says the API may still be down when the rollback did not finish", async () => {
    const { message } = await composeFailedAfterApproval(
      { prepare: "2026-11-25T02:21:02.000Z", stop_apiserver: "2026-11-25T02:21:05.000Z" },
      { rollbackAgents: { state: "failed", summary: "cp-2: etcd still accepts connections" } },
    );
    expect(message).toMatch(/Outage: {4}the API servers were told to stop at .*; they may still be down/);
  });

  it("counts only the execution's time when it ended before approval, and nothing without timestamps", async () => {
    const { dependencies } = fakeDependencies();
    const rejected = { failure: { Error: "RestoreRejected", Cause: "not now" }, rolledBack: "none" };
    const { message } = await composeRestoreMessage(
      dependencies,
      input,
      executionArn,
      "failed",
      rejected,
      executionStartedAt,
    );
    expect(message).toContain("Took:      30 min 0 s since the execution started\n");
    expect(message).not.toMatch(/Outage:|Phases:/);
    const { message: withoutStart } = await composeRestoreMessage(
      dependencies,
      input,
      executionArn,
      "failed",
      rejected,
    );
    expect(withoutStart).not.toMatch(/Took:|Outage:|Phases:/);
  });

  it("never reports a negative time when the function's clock is behind Step Functions'", async () => {
    const { dependencies } = fakeDependencies("2026-11-25T01:59:59.990Z");
    const { timings } = await composeRestoreMessage(
      dependencies,
      input,
      executionArn,
      "failed",
      {},
      executionStartedAt,
    );
    expect(timings.totalMs).toBe(0);
  });
});

/** The notice of a restore with this outcome and state, composed at the fixed time. */
async function noticeOf(outcome: "succeeded" | "failed", state: Record<string, unknown>): Promise<string> {
  return (await composeRestoreMessage(fakeDependencies().dependencies, input, executionArn, outcome, state))
    .message;
}

describe("composeRestoreMessage with the pod executor", () => {
  const removal = {
    removed: ["pod/etcd-restore-abc-0", "secret/etcd-restore-abc"],
    leftovers: ["pod/etcd-restore-abc-1: forbidden"],
    agentPods: [
      "etcd-restore-abc-0 (cp-0): Running",
      "etcd-restore-abc-1 (cp-1): Pending — ContainerCreating; FailedMount: hostPath type check failed",
    ],
  };

  it("on failure, says what became of each agent pod and what could not be removed", async () => {
    const message = await noticeOf("failed", {
      rolledBack: "none",
      agentPodsRemoved: removal,
    });
    expect(message).toMatch(/^Changes: {3}none — nothing on the nodes was touched\.$/m);
    expect(message).toContain(
      "\nPods:      etcd-restore-abc-0 (cp-0): Running; etcd-restore-abc-1 (cp-1): Pending — ContainerCreating; FailedMount: hostPath type check failed\n",
    );
    expect(message).toMatch(
      /^Leftovers: pod\/etcd-restore-abc-1: forbidden \(remove them with kubectl delete/m,
    );
  });

  it("on success, lists only what was left behind", async () => {
    const message = await noticeOf("succeeded", {
      agentPodsRemoved: { ...removal, agentPods: ["etcd-restore-abc-0 (cp-0): Succeeded"] },
    });
    expect(message).not.toMatch(/^Pods:/m);
    expect(message).toMatch(/^Leftovers: pod\/etcd-restore-abc-1: forbidden/m);
  });

  it("says when the removal itself failed", async () => {
    const message = await noticeOf("failed", {
      agentPodsLeftover: { Error: "Lambda.Unknown", Cause: "timeout" },
    });
    expect(message).toMatch(
      /^Leftovers: the agent pods and their Secret could not be removed \(Lambda\.Unknown: timeout\)/m,
    );
  });
});

describe("composeRestoreMessage with the ssm executor, after an abort", () => {
  it("says what became of each agent's command, with the last line of its stderr", async () => {
    const message = await noticeOf("failed", {
      rolledBack: "none",
      agentCommandStates: [
        {
          commandId: "c-0",
          agent: { member: "cp-0", instanceId: "i-0aa" },
          invocation: { status: "InProgress", details: "InProgress", stderr: "" },
        },
        {
          commandId: "c-1",
          agent: { member: "cp-1", instanceId: "i-0bb" },
          invocation: { status: "Pending", details: "Undeliverable", stderr: "" },
        },
        {
          commandId: "c-2",
          agent: { member: "cp-2", instanceId: "i-0cc" },
          invocation: {
            status: "Failed",
            details: "Failed",
            stderr: "10:00:01 starting\n10:00:02 FAILED: curl: command not found\n",
          },
        },
        {
          commandId: "c-4",
          agent: { member: "cp-4", instanceId: "i-0ee" },
          invocation: {
            status: "Failed",
            details: "Failed",
            stderr:
              "curl: (22) The requested URL returned error: 403 https://b.s3.amazonaws.com/p/plan.json?X-Amz-Signature=abc&X-Amz-Credential=AKIA",
          },
        },
        {
          commandId: "c-3",
          agent: { member: "cp-3", instanceId: "i-0dd" },
          invocationError: { Error: "Ssm.InvocationDoesNotExistException", Cause: "…" },
        },
      ],
    });
    expect(message).toContain(
      "\nCommands:  cp-0 (i-0aa): InProgress; cp-1 (i-0bb): Pending (Undeliverable); cp-2 (i-0cc): Failed — 10:00:02 FAILED: curl: command not found; cp-4 (i-0ee): Failed — curl: (22) The requested URL returned error: 403 https://b.s3.amazonaws.com/p/plan.json?…; cp-3 (i-0dd): unreadable (Ssm.InvocationDoesNotExistException)\n",
    );
  });
});

describe("composeRestoreMessage keeping credentials out of the notice", () => {
  it("withholds an agent command's stderr line that still names request credentials without a URL", async () => {
    const message = await noticeOf("failed", {
      agentCommandStates: [
        {
          agent: { member: "cp-0", instanceId: "i-0aa" },
          invocation: {
            status: "Failed",
            details: "Failed",
            stderr: "signed with X-Amz-Credential=AKIA/2026",
          },
        },
      ],
    });
    expect(message).toContain(
      "\nCommands:  cp-0 (i-0aa): Failed — (line withheld: it contained request credentials)\n",
    );
    expect(message).not.toContain("AKIA");
  });
});

describe("formatDuration", () => {
  it.each([
    [850, "850 ms"],
    [4_249, "4.2 s"],
    [59_999, "59 s"],
    [271_000, "4 min 31 s"],
    [7_500_000, "2 h 05 min"],
  ])("writes %i ms as %s", (ms, written) => {
    expect(formatDuration(ms)).toBe(written);
  });
});
