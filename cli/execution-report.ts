// How the CLI reports a workflow execution, deployed or local: a few lines (or the JSON), and the exit
// code its failed step's error maps to.

import { approvalRejectedError } from "../lambdas/core/catalogue/approval-tokens.js";
import { readableCause } from "../lambdas/core/failure-cause.js";
import type { ExecutionStatus } from "./execution-status.js";
import { ExitCodes, exitCodeFor } from "./exit-codes.js";
import { agentReportLine } from "./restore-agent-reports.js";
import { printJson } from "./terminal-output.js";

export function printStatus(status: ExecutionStatus, flags: { json?: boolean }): void {
  if (flags.json) {
    printJson(status);
    return;
  }
  const lines = [`${status.name}: ${status.status}`];
  if (status.startedAt) lines.push(`  started  ${status.startedAt}`);
  if (status.stoppedAt) lines.push(`  stopped  ${status.stoppedAt}`);
  if (status.status === "RUNNING" && status.currentState) lines.push(`  now at   ${status.currentState}`);
  if (status.agents?.length) {
    lines.push("  agents");
    for (const agent of status.agents) lines.push(`    ${agentReportLine(agent)}`);
  }
  if (status.agentsUnavailable) lines.push(`  agents   unreadable: ${status.agentsUnavailable}`);
  const snapshot = snapshotOf(status.output);
  if (snapshot)
    lines.push(`  snapshot ${snapshot.snapshotId} (${snapshot.bytes} bytes, sha256 ${snapshot.sha256})`);
  if (status.failure) {
    const where = status.failure.state ? ` at ${status.failure.state}` : "";
    lines.push(
      `  failed${where}: ${status.failure.error ?? "unknown error"}${status.failure.cause ? `: ${readableCause(status.failure.cause)}` : ""}`,
    );
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

/**
 * The exit code a finished execution maps to: its failed step's error, as the local commands map it; a
 * restore that a person (or nobody, in time) turned down, or an execution stopped from outside, did not
 * fail, and says so apart.
 */
export function exitCodeOf(status: ExecutionStatus): number {
  if (status.status === "SUCCEEDED" || status.status === "RUNNING") return ExitCodes.ok;
  if (status.status === "ABORTED" || status.status === "TIMED_OUT" || wasTurnedDown(status)) {
    return ExitCodes.stopped;
  }
  return exitCodeFor({ name: status.failure?.error });
}

/** The restore state that waits for a person's answer (statemachine/restore.asl.json). */
export const approvalState = "RequestApproval";

function wasTurnedDown({ failure }: ExecutionStatus): boolean {
  return (
    failure?.error === approvalRejectedError ||
    (failure?.state === approvalState && failure.error === "States.Timeout")
  );
}

/** A backup execution's output carries the stored snapshot under `snapshot.result`. */
function snapshotOf(output: unknown): { snapshotId: string; bytes: number; sha256: string } | undefined {
  const result = (
    output as { snapshot?: { result?: { snapshotId?: string; bytes?: number; sha256?: string } } }
  )?.snapshot?.result;
  return result?.snapshotId && result.bytes !== undefined && result.sha256
    ? { snapshotId: result.snapshotId, bytes: result.bytes, sha256: result.sha256 }
    : undefined;
}
