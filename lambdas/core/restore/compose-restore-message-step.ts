// The last restore state, on either path: release the lease if this execution holds it, and tell
// on-call what happened — with timings on success, and on failure what failed and what was rolled back.

import { restoreLeaseSeconds } from "../backup/backup-dependencies.js";
import { consoleLink } from "../backup/mark-failed-step.js";
import { describeError } from "../errors.js";
import { readableCause } from "../failure-cause.js";
import type { RestoreDependencies } from "./restore-dependencies.js";
import type { RestoreInput } from "./restore-payloads.js";
import { type RestoreTimings, restoreTimings, timingLines } from "./restore-timings.js";

/** How long the restore's lease outlives its last renewal (every phase renews it). */
const leaseLife = `${Math.floor(restoreLeaseSeconds / 3600)} h ${(restoreLeaseSeconds % 3600) / 60} min`;

export async function composeRestoreMessage(
  dependencies: RestoreDependencies,
  input: Partial<RestoreInput>,
  executionArn: string,
  outcome: "succeeded" | "failed",
  state: Record<string, unknown>,
  executionStartedAt?: string,
): Promise<{ subject: string; message: string; timings: RestoreTimings }> {
  const timings = restoreTimings(state, executionStartedAt, dependencies.now());
  const cluster = input.cluster ?? "(no cluster given)";
  const lines: string[] = [];
  const rollback = state.rollbackAgents as { state?: string; summary?: string } | undefined;
  // StartRollback or Check_rollback failed: the phase's own failure stays in `failure`.
  const rollbackFailure = state.rollbackFailure as { Error?: string; Cause?: string } | undefined;
  const rollbackIncomplete =
    rollbackFailure !== undefined || (rollback !== undefined && rollback.state !== "done");
  if (outcome === "failed" && state.lease !== undefined && input.cluster) {
    // Members may be stopped, or swapped and not back: no scheduled backup should run against that.
    const lease = rollbackIncomplete
      ? `kept, so that no backup runs while members are as the rollback left them; it lapses by itself ${leaseLife} after the restore's last phase`
      : await dependencies.leases
          .releaseLease({ cluster: input.cluster, owner: executionArn })
          .then((result) => (result.released ? "lease released" : "lease was not held"))
          .catch((error: unknown) => `could not release the lease: ${describeError(error)}`);
    lines.push(`Lease:     ${lease}`);
  }
  const releaseFailure = state.releaseFailure as { Error?: string; Cause?: string } | undefined;
  if (outcome === "succeeded" && releaseFailure) {
    lines.push(
      `Lease:     could not be released (${releaseFailure.Error ?? "unknown"}: ${readableCause(releaseFailure.Cause)}); scheduled backups resume when it lapses, ${leaseLife} after the restore's last phase`,
    );
  }
  const failure = state.failure as { Error?: string; Cause?: string } | undefined;
  const agents = (state.agents ?? state.rollbackAgents) as { summary?: string } | undefined;
  const health = state.health as { summary?: string } | undefined;
  // The backup execution's output; or, when it failed, its error as caught ({Error, Cause}), which the
  // SafetySnapshotSkipped state keeps beside `skipped`.
  const safetySnapshot = state.safetySnapshot as
    | {
        output?: { snapshot?: { result?: { snapshotId?: string } } };
        skipped?: boolean;
        Error?: string;
        Cause?: string;
      }
    | undefined;
  const safetySnapshotId = safetySnapshot?.output?.snapshot?.result?.snapshotId;
  const safetySnapshotFailure = safetySnapshot?.Error ? readableCause(safetySnapshot.Cause) : undefined;
  const subject =
    outcome === "succeeded"
      ? `etcd-backup: restore of ${cluster} succeeded`
      : `etcd-backup: restore of ${cluster} FAILED${rollbackIncomplete ? ", rollback incomplete" : rollback ? ", rolled back" : ""}`;
  const message = [
    outcome === "succeeded"
      ? `etcd cluster "${cluster}" was restored from snapshot ${input.snapshotId}.`
      : `The restore of etcd cluster "${cluster}" from snapshot ${input.snapshotId} failed.`,
    "",
    failure ? `Error:     ${failure.Error ?? "unknown"}: ${readableCause(failure.Cause)}` : undefined,
    state.rolledBack === "none" ? "Changes:   none — nothing on the nodes was touched." : undefined,
    rollbackFailure
      ? `Rollback:  INCOMPLETE — it could not be driven (${rollbackFailure.Error ?? "unknown"}: ${readableCause(rollbackFailure.Cause)}): do the manual rollback (docs/restore.md) on every member`
      : rollback
        ? `Rollback:  ${rollback.state === "done" ? "old data dirs swapped back and etcd restarted" : "INCOMPLETE"} — ${rollback.summary ?? ""}`
        : undefined,
    health?.summary ? `Health:    ${health.summary}` : undefined,
    outcome === "succeeded" && safetySnapshotId
      ? `Undo:      ${undoCommand(cluster, safetySnapshotId, input, dependencies.operatorCliFlags)} (the state before, saved as ${safetySnapshotId})`
      : undefined,
    outcome === "succeeded" && safetySnapshot?.skipped
      ? "Undo:      none — the state before could not be saved; skipSafetySnapshot let the restore go on"
      : undefined,
    safetySnapshotFailure ? `Safety:    the safety snapshot failed: ${safetySnapshotFailure}` : undefined,
    agents?.summary ? `Agents:    ${agents.summary}` : undefined,
    ...agentPodLines(outcome, state),
    ...agentCommandLines(state),
    ...timingLines(timings, rollback?.state === "done"),
    ...lines,
    `Execution: ${executionArn}`,
    `Console:   ${consoleLink(executionArn)}`,
  ]
    .filter((line): line is string => line !== undefined)
    .join("\n");
  dependencies.reporter.metric(outcome === "succeeded" ? "RestoreSucceeded" : "RestoreFailed", "Count", 1);
  // Per cluster, to compare rehearsals with the recovery objective over time: restores that succeeded
  // only (a failure's figures measure the time to fail, and its outage may not have ended).
  if (outcome === "succeeded" && timings.sinceApprovalMs !== undefined) {
    dependencies.reporter.metric("RestoreDuration", "Milliseconds", timings.sinceApprovalMs);
  }
  if (outcome === "succeeded" && timings.outageMs !== undefined && timings.outageEnded) {
    dependencies.reporter.metric("RestoreOutage", "Milliseconds", timings.outageMs);
  }
  return { subject: subject.slice(0, 99), message, timings };
}

/**
 * Restoring the safety snapshot: etcd's cluster id is new after a restore, so undoing it needs the flag
 * that says so; the same nodes' restore tool needs the same revision-bump allowance as this restore.
 */
function undoCommand(
  cluster: string,
  safetySnapshotId: string,
  input: Partial<RestoreInput>,
  operatorCliFlags: string,
): string {
  const allowances = input.allowWithoutRevisionBump ? " --allow-without-revision-bump" : "";
  return `etcd-backup restore${operatorCliFlags} --cluster ${cluster} --snapshot-id ${safetySnapshotId} --allow-cluster-id-change${allowances}`;
}

/**
 * The pod executor's pods: on failure, what became of each (an agent that never reported has only its pod
 * to tell why, and the pod is removed); on either outcome, what could not be removed.
 */
function agentPodLines(outcome: "succeeded" | "failed", state: Record<string, unknown>): string[] {
  const removal = state.agentPodsRemoved as { leftovers?: string[]; agentPods?: string[] } | undefined;
  const removalFailure = state.agentPodsLeftover as { Error?: string; Cause?: string } | undefined;
  return [
    ...(outcome === "failed" && removal?.agentPods?.length
      ? [`Pods:      ${removal.agentPods.join("; ")}`]
      : []),
    ...(removal?.leftovers?.length
      ? [`Leftovers: ${removal.leftovers.join("; ")} (remove them with kubectl delete; docs/restore.md)`]
      : []),
    ...(removalFailure
      ? [
          `Leftovers: the agent pods and their Secret could not be removed (${removalFailure.Error ?? "unknown"}: ${readableCause(removalFailure.Cause)}); docs/restore.md says how`,
        ]
      : []),
  ];
}

/** One agent's Run Command invocation as DescribeAgentCommands_abort read it (ssm executor). */
interface AgentCommandState {
  agent?: { member?: string; instanceId?: string };
  invocation?: { status?: string; details?: string; stderr?: string };
  invocationError?: { Error?: string; Cause?: string };
}

/**
 * Under ssm, after an abort: each agent's command as Systems Manager saw it — an agent that never reported
 * (its node's SSM agent offline, a tool missing) has only that to say why. The last line of its stderr is
 * the agent's own last word.
 */
function agentCommandLines(state: Record<string, unknown>): string[] {
  const commands = state.agentCommandStates as AgentCommandState[] | undefined;
  if (!commands?.length) return [];
  const described = commands.map(({ agent, invocation, invocationError }) => {
    const who = `${agent?.member ?? "?"} (${agent?.instanceId ?? "?"})`;
    if (!invocation) return `${who}: unreadable (${invocationError?.Error ?? "unknown"})`;
    const { status = "Unknown", details, stderr } = invocation;
    const lastWord = withoutCredentials(stderr?.trim().split("\n").at(-1) ?? "").slice(0, 200);
    return `${who}: ${status}${details && details !== status ? ` (${details})` : ""}${lastWord ? ` — ${lastWord}` : ""}`;
  });
  return [`Commands:  ${described.join("; ")}`];
}

/**
 * The agent's own redaction rule (`redact` in etcd-restore-agent.sh), for a line it did not write itself
 * (a tool's message on stderr): a URL's query is cut off, and a line still naming request credentials is
 * withheld whole.
 */
function withoutCredentials(line: string): string {
  const cut = line.replace(/(https?:\/\/[^\s?"]*)\?[^\s"]*/g, "$1?…");
  return /[Ss]ignature=|X-Amz-/.test(cut) ? "(line withheld: it contained request credentials)" : cut;
}
