// How long the restore agents' presigned URLs live, and why a phase may not last longer than they do.
//
// A presigned URL stops working when the session that signed it expires, whatever its X-Amz-Expires. The
// URLs are signed with a session of the PresignRole that a Lambda function assumes: role chaining, which
// STS caps at 1 hour. No URL can therefore outlive a long restore; instead they roll. Every time the state
// machine writes a plan (WritePlans, every Phase_* state, StartRollback, AbortAgents) it signs new ones
// and puts them in the plan — the snapshot URL, and the plan and status URLs the agent takes from then on
// — so each URL only has to bridge the time from one plan write to the agent's read of the next.
//
// Plan k is written at T(k). The agent reads it, does phase k, and keeps polling with plan k's URLs until
// it reads plan k+1. The state machine writes plan k+1 at the latest when phase k passed its deadline
// (phaseTimeoutSeconds after T(k)) plus the steps around a phase: its last status poll (pollSeconds ≤ 60 s
// and a check of ≤ 60 s), CheckEtcdHealth (≤ 120 s) and the next set-phase function with its retries —
// `stepAllowanceSeconds` bounds them. The agent then reads within its poll interval, or within its own
// retries when S3 does not answer (`agentReadAllowanceSeconds`). Plan k's URLs must live that long; they
// live the whole hour instead, so that an agent whose phase overran its deadline (a slow download the
// state machine gave up on) can still read the rollback plan, and that bounds the phase timeout.

/** STS's ceiling for a role-chained session, and so for every URL it signs. */
export const chainedSessionSeconds = 3600;

/** A signing session is reused while it outlives a new URL, or, for the longest URLs, while it is this young. */
export const sessionReuseSeconds = 300;

/** The state machine's steps between a phase's deadline and the next plan write (see above). */
export const stepAllowanceSeconds = 600;

/** The agent's read of the next plan after it was written, with a few retries when S3 does not answer. */
export const agentReadAllowanceSeconds = 300;

/**
 * The URLs inside a plan (snapshot GET, plan GET, status PUT): as long as a session can sign. A session up
 * to `sessionReuseSeconds` old may sign them, so they live at least 55 minutes.
 */
export const planUrlSeconds = chainedSessionSeconds;

/** The phase timeout a restore layout gets unless it names one. */
export const defaultPhaseTimeoutSeconds = 900;

/**
 * The longest phase timeout whose plan URLs still reach the next plan:
 * 3600 − 300 (session reuse) − 600 (steps) − 300 (agent read) = 2400 s.
 */
export const maxPhaseTimeoutSeconds =
  planUrlSeconds - sessionReuseSeconds - stepAllowanceSeconds - agentReadAllowanceSeconds;

/**
 * The URLs the agent is launched with (Systems Manager's command, which keeps its parameters in the command
 * history): they are needed only until the agent's first plan read, which hands it the rolling URLs. An
 * agent may start as late as the prepare phase's deadline (Systems Manager delivers a command for up to
 * 10 minutes), so they outlive the prepare phase and the steps around it, and no longer.
 */
export function launchUrlSeconds(phaseTimeoutSeconds: number): number {
  return Math.min(planUrlSeconds, phaseTimeoutSeconds + stepAllowanceSeconds);
}
