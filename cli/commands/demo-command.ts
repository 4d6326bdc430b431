// `etcd-backup demo`: the whole product on this machine. A real etcd (1 or 3 members, run as static pods
// by the kubelet stand-in), s3rver and dynalite; Kubernetes-shaped keys; the backup state machine; more
// writes; the restore state machine with the approval answered here; then checks of the outcome.
// Progress goes to stderr, the summary (or the JSON with --json) to stdout.
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import { revisionBump } from "../../lambdas/core/restore/validate-restore-step.js";
import { preRestoreTag } from "../../lambdas/core/retention/retention-policy.js";
import {
  allMembersAgreed,
  describeMemberHashCheck,
  type MemberHashCheck,
} from "../../lambdas/core/snapshot/member-hash-check.js";
import { createEtcdWriter } from "../local/etcd-writer.js";
import { kubernetesShapedKeys } from "../local/kubernetes-shaped-keys.js";
import { localCluster, startLocalStack } from "../local/local-stack.js";
import type { StateEvent } from "../local/local-state-machine.js";
import { isBarrierPollingState, runLocalBackup, runLocalRestore } from "../local/local-workflows.js";
import { requireEtcd } from "../local/require-etcd.js";
import { createActivityProgress, formatBytes, ignoreOutputErrors, printJson } from "../terminal-output.js";
import { parseLocalStackSize } from "./local-stack-size.js";

export interface DemoFlags {
  members: string;
  keys: string;
  json?: boolean;
}

/**
 * Which execution a state belongs to: the backup, the restore, or the backup state machine run again by
 * the restore's SafetySnapshot state (the pre-restore safety snapshot).
 */
type DemoRun = "backup" | "restore" | "safety";

interface StateTiming {
  run: DemoRun;
  machine: "backup" | "restore";
  state: string;
  durationMs: number;
  outcome: string;
}

export async function runDemoCommand(flags: DemoFlags): Promise<{ ok: boolean }> {
  const { members, keyCount } = parseLocalStackSize(flags, 1);
  await requireEtcd();
  const progress = createActivityProgress(!flags.json && Boolean(process.stderr.isTTY));
  const say = flags.json ? () => {} : progress.say;
  const states: StateTiming[] = [];
  const entered = new Map<string, number>();
  // The nested backup reports as "backup" too: while the restore is in SafetySnapshot, it is that run.
  let inSafetySnapshot = false;
  const onEvent = (event: StateEvent, machine: "backup" | "restore") => {
    const run: DemoRun = machine === "backup" && inSafetySnapshot ? "safety" : machine;
    const key = `${run}:${event.state}`;
    if (event.type === "entered") {
      entered.set(key, event.at);
      if (!isBarrierPollingState(event.state)) say(`  ${run.padEnd(7)} ▶ ${event.state}`);
      if (run === "restore" && event.state === "SafetySnapshot") {
        inSafetySnapshot = true;
        say("          (the backup state machine again, for the state before the restore: marked safety)");
      }
    } else if (event.type === "exited" || event.type === "failed") {
      if (run === "restore" && event.state === "SafetySnapshot") inSafetySnapshot = false;
      const durationMs = event.at - (entered.get(key) ?? event.at);
      states.push({
        run,
        machine,
        state: event.state,
        durationMs,
        outcome: event.type === "exited" ? "ok" : "failed",
      });
      if (event.type === "failed") say(`  ${run.padEnd(7)} ✗ ${event.state} ${event.detail ?? ""}`);
    } else if (event.type === "retried") {
      say(`  ${run.padEnd(7)} ↻ ${event.state} (retry)`);
    }
  };

  say(`starting etcd (${members} member${members > 1 ? "s" : ""}), s3rver and dynalite on loopback…`);
  const stack = await startLocalStack({ members });
  // The terminal closed (SIGHUP) as much as Ctrl-C: the stack's processes and files go either way.
  const interrupt = (signal: NodeJS.Signals) => {
    if (signal === "SIGHUP") ignoreOutputErrors();
    void stack.stop().finally(() => process.exit(signal === "SIGHUP" ? 129 : 130));
  };
  process.once("SIGINT", interrupt);
  process.once("SIGTERM", interrupt);
  process.once("SIGHUP", interrupt);
  try {
    const writer = createEtcdWriter({ endpoints: stack.etcd.nodes.map((node) => node.clientUrl) });
    say(`writing ${keyCount} Kubernetes-shaped keys…`);
    const before = kubernetesShapedKeys(keyCount);
    await writer.putMany(before);

    say("\nbackup state machine (statemachine/backup.asl.json):");
    const backupStarted = Date.now();
    const backup = await runLocalBackup(
      { cluster: localCluster, scheduledTime: new Date().toISOString() },
      { onEvent, onProgress: progress.update },
    );
    const backupMs = Date.now() - backupStarted;
    const snapshot = await stack.catalogue.findLatestVerified(localCluster);
    if (backup.status !== "SUCCEEDED" || !snapshot) {
      throw new Error(`the backup failed: ${backup.error?.name}: ${backup.error?.cause}`);
    }

    const after = Array.from({ length: Math.max(10, Math.round(keyCount / 10)) }, (_, index) => [
      `/registry/events/default/after-snapshot-${index}`,
      `written after the snapshot ${index}`,
    ]) as Array<[string, string]>;
    say(`\nwriting ${after.length} more keys after the snapshot (the restore must remove them)…`);
    await writer.putMany(after);

    say("\nrestore state machine (statemachine/restore.asl.json):");
    const restoreStarted = Date.now();
    const restore = await runLocalRestore(
      { cluster: localCluster, snapshotId: snapshot.snapshotId, allowWithoutRevisionBump: true },
      {
        onEvent,
        onProgress: progress.update,
        // As `etcd-backup approve --local` would: the answer recorded on the pending approval.
        onApprovalRequested: async (executionName) => {
          const request = (await stack.readNotifications()).at(-1);
          say(`  approval requested: "${request?.subject}" — approved by the demo`);
          await stack.approvals.recordAnswer(executionName, { approved: true, by: "etcd-backup demo" });
        },
      },
    );
    const restoreMs = Date.now() - restoreStarted;
    const safetySnapshot = (
      await stack.catalogue.listSnapshots(localCluster, { status: "VERIFIED" })
    ).snapshots.find((row) => row.tags.includes(preRestoreTag));

    const healthy = await stack.etcd.waitUntilHealthy(15_000).then(
      () => true,
      () => false,
    );
    const client = createEtcdClient({ endpoint: stack.etcd.nodes[0]?.clientUrl as string });
    const { count: keysRestored, revision: restoredRevision } = await client.countKeys("/registry/");
    const { count: keysAfterSnapshotLeft } = await client.countKeys(
      "/registry/events/default/after-snapshot-",
    );
    client.close();
    const restoredAt = restoredRevisionOf(restoredRevision, snapshot.revision);
    const checks = {
      backupSucceeded: backup.status === "SUCCEEDED",
      // Every member holds the snapshot's content at its revision: none diverged, none left unasked.
      backupMatchesMembers: snapshot.memberHash !== undefined && allMembersAgreed(snapshot.memberHash),
      restoreSucceeded: restore.status === "SUCCEEDED",
      keysBack: keysRestored === keyCount,
      keysAfterSnapshotGone: keysAfterSnapshotLeft === 0,
      revisionAsCatalogued: restoredAt.asCatalogued,
      healthy,
    };
    const ok = Object.values(checks).every(Boolean);
    const result = {
      ok,
      backup: {
        snapshotId: snapshot.snapshotId,
        bytes: snapshot.bytes,
        sha256: snapshot.sha256,
        revision: snapshot.revision,
        totalKey: snapshot.totalKey,
        liveKeyCount: snapshot.liveKeyCount,
        memberHash: snapshot.memberHash,
        durationMs: backupMs,
      },
      restore: {
        status: restore.status,
        error: restore.error,
        safetySnapshotId: safetySnapshot?.snapshotId,
        revision: restoredRevision,
        revisionBumpedBy: restoredAt.bumpedBy,
        keysRestored,
        keysAfterSnapshotGone: keysAfterSnapshotLeft === 0,
        healthy,
        durationMs: restoreMs,
        barrierPhasesMs: barrierPhaseDurations(states),
      },
      checks,
      states,
    };
    if (flags.json) printJson(result);
    else {
      say("");
      printSummary(result);
    }
    return { ok };
  } finally {
    process.off("SIGINT", interrupt);
    process.off("SIGTERM", interrupt);
    process.off("SIGHUP", interrupt);
    await stack.stop();
  }
}

function printSummary(result: {
  ok: boolean;
  backup: {
    snapshotId: string;
    bytes: number;
    sha256: string;
    revision: number;
    liveKeyCount: number;
    memberHash: MemberHashCheck | undefined;
    durationMs: number;
  };
  restore: {
    status: string;
    safetySnapshotId: string | undefined;
    revision: number;
    revisionBumpedBy: number;
    keysRestored: number;
    keysAfterSnapshotGone: boolean;
    healthy: boolean;
    durationMs: number;
    barrierPhasesMs: Record<string, number>;
  };
  checks: Record<string, boolean>;
  states: StateTiming[];
}): void {
  const slowest = [...result.states]
    .filter((state) => !isBarrierPollingState(state.state))
    .sort((a, b) => b.durationMs - a.durationMs)
    .slice(0, 6);
  const lines = [
    "backup",
    `  snapshot   ${result.backup.snapshotId}`,
    `  size       ${formatBytes(result.backup.bytes)}`,
    `  sha256     ${result.backup.sha256}`,
    `  revision   ${result.backup.revision}, ${result.backup.liveKeyCount} keys`,
    `  hashkv     ${result.backup.memberHash ? describeMemberHashCheck(result.backup.memberHash) : "not compared"}`,
    `  took       ${(result.backup.durationMs / 1000).toFixed(1)} s`,
    "restore",
    `  outcome    ${result.restore.status}`,
    `  safety     ${result.restore.safetySnapshotId ?? "none"} (the state before the restore, tagged ${preRestoreTag})`,
    `  keys back  ${result.restore.keysRestored}`,
    `  keys gone  ${result.restore.keysAfterSnapshotGone ? "yes (written after the snapshot)" : "NO"}`,
    `  revision   ${result.restore.revision}${result.restore.revisionBumpedBy ? ` (the snapshot's ${result.backup.revision}, bumped by ${result.restore.revisionBumpedBy})` : ""}`,
    `  health     ${result.restore.healthy ? "every member healthy" : "UNHEALTHY"}`,
    `  took       ${(result.restore.durationMs / 1000).toFixed(1)} s`,
    `  phases     ${Object.entries(result.restore.barrierPhasesMs)
      .map(([phase, ms]) => `${phase} ${(ms / 1000).toFixed(1)} s`)
      .join(", ")} (each to its barrier: every member done)`,
    `slowest states: ${slowest
      .map((state) => `${state.run}/${state.state} ${(state.durationMs / 1000).toFixed(1)} s`)
      .join(", ")}`,
    ...(slowest.some((state) => state.run === "safety")
      ? ["  (safety/: the backup state machine, run by the restore for its safety snapshot)"]
      : []),
    "",
    result.ok
      ? "demo OK: every check held"
      : `demo FAILED: ${Object.entries(result.checks)
          .filter(([, held]) => !held)
          .map(([name]) => name)
          .join(", ")}`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

/**
 * Where the restore put etcd's revision: at the snapshot's, where the restore tool has no --bump-revision
 * (etcdctl 3.4), or that plus the restore's bump, where it has (etcdutl 3.6, and 3.5 releases with the
 * backport). The demo writes nothing after the restore, so the revision is exactly one of the two.
 */
export function restoredRevisionOf(
  restoredRevision: number,
  cataloguedRevision: number,
): { asCatalogued: boolean; bumpedBy: number } {
  const bumpedBy = restoredRevision >= cataloguedRevision + revisionBump ? revisionBump : 0;
  return { asCatalogued: restoredRevision === cataloguedRevision + bumpedBy, bumpedBy };
}

/**
 * How long each of the restore's barrier phases took, from writing its plans to every agent reporting it
 * done: its Phase_, Wait_, Check_ and Is_…_Done states run in turn, so their durations add up.
 */
function barrierPhaseDurations(states: StateTiming[]): Record<string, number> {
  const phases: Record<string, number> = {};
  for (const state of states) {
    if (state.run !== "restore") continue;
    const phase = /^(?:Phase|Wait|Check)_(.+)$|^Is_(.+)_Done$/.exec(state.state);
    const name = (phase?.[1] ?? phase?.[2])?.replaceAll("_", "-");
    if (name) phases[name] = (phases[name] ?? 0) + state.durationMs;
  }
  return phases;
}
