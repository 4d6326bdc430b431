// How long a restore may run, in one place: the restore state machine's TimeoutSeconds (written in
// statemachine/restore.asl.json, which a test holds to this value) and, derived from it, how long Systems
// Manager lets the restore agents run before it kills them.

/** The longest approval wait a target may configure (`restore.approvalTimeoutSeconds`). */
export const maxApprovalTimeoutSeconds = 7 * 24 * 3600;

/** What an execution has after the longest approval: the lease, the safety snapshot, the barriers, a rollback. */
export const restoreWorkSeconds = 4 * 3600;

/** The restore state machine's TimeoutSeconds: no execution lasts longer. */
export const restoreStateMachineTimeoutSeconds = maxApprovalTimeoutSeconds + restoreWorkSeconds;

/** The longest `executionTimeout` AWS-RunShellScript accepts: 48 hours. */
export const runCommandMaxExecutionTimeoutSeconds = 48 * 3600;

/**
 * Beyond the execution's end: Systems Manager may deliver a command up to 10 minutes after it was sent, and an
 * agent whose execution ended (timed out, stopped) keeps polling until its last plan's hour-long URLs expire.
 */
export const agentExecutionMarginSeconds = 3600;

/**
 * The Run Command's `executionTimeout` for the restore agents. They start once the restore is approved, which
 * may happen at once, so the execution can drive them for up to its whole timeout: they get that, plus the
 * margin, within what Systems Manager accepts. (The barrier phases bound an agent's life far more tightly; a
 * test checks that they fit.) Killing an agent mid-restore would leave a member half-done with nobody to roll
 * it back; an agent given longer than it needs ends by itself.
 */
export const agentExecutionTimeoutSeconds = Math.min(
  restoreStateMachineTimeoutSeconds + agentExecutionMarginSeconds,
  runCommandMaxExecutionTimeoutSeconds,
);

/**
 * How long an agent waits by default for etcd or kube-apiserver to stop, and to start (the targets file's
 * `restore.stopTimeoutSeconds` and `startTimeoutSeconds`; the agent script's defaults too).
 */
export const agentStopWaitSeconds = 120;
export const agentStartWaitSeconds = 300;

/**
 * The agents' waits as a plan carries them: they end two status polls and ten seconds before the phase's
 * deadline, so that the barrier reads the agent's own reason ("etcd did not answer healthy within
 * 108 s") rather than only that the deadline passed.
 */
export function agentWaitSeconds(layout: {
  phaseTimeoutSeconds: number;
  pollSeconds: number;
  stopTimeoutSeconds: number;
  startTimeoutSeconds: number;
}): { stopTimeoutSeconds: number; startTimeoutSeconds: number } {
  const withinPhase = Math.max(10, layout.phaseTimeoutSeconds - 2 * layout.pollSeconds - 10);
  return {
    stopTimeoutSeconds: Math.min(layout.stopTimeoutSeconds, withinPhase),
    startTimeoutSeconds: Math.min(layout.startTimeoutSeconds, withinPhase),
  };
}
