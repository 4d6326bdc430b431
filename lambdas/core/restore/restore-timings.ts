// How long a restore took, for its notices, from the timestamps its state keeps as it goes: the
// execution's start (Step Functions' context object), the lease taken right after approval, and the time
// each barrier phase's plans were written, as the steps that wrote them report it. No execution history
// is read, and none of this needs `$$.State.EnteredTime`, which aws-local-stepfunctions does not provide.

/** Where restore.asl.json keeps a phase's result (`$.phases.<key>`), in the order the phases run. */
const barrierPhases = [
  { key: "prepare", label: "prepare" },
  { key: "stop_apiserver", label: "stop-apiserver" },
  { key: "stop", label: "stop-etcd" },
  { key: "restore", label: "restore" },
  { key: "start", label: "start-etcd" },
  { key: "health", label: "health check" },
  { key: "start_apiserver", label: "start-apiserver" },
  { key: "finish", label: "finish" },
] as const;

export interface RestoreTimings {
  /** From the execution's start to the notice: the wait for approval included. */
  totalMs?: number;
  /** From the lease, taken right after approval, to the notice: the restore's own work. */
  sinceApprovalMs?: number;
  /** The Kubernetes API down: from the stop-apiserver barrier to the end of start-apiserver's, or to the notice. */
  outageMs?: number;
  /** When the API servers were told to stop. */
  outageStartedAt?: string;
  /** False when start-apiserver's barrier never passed: the outage lasted at least until the notice. */
  outageEnded?: boolean;
  /** Each step after approval, in order, each until the next began. */
  phases: Array<{ phase: string; ms: number }>;
}

/**
 * The restore's timings at `endedAt`, from the execution's state. A phase lasts from its plans' write to
 * the next phase's, so it includes the barrier's last poll: each is exact to `pollSeconds`.
 */
export function restoreTimings(
  state: Record<string, unknown>,
  executionStartedAt: string | undefined,
  endedAt: Date,
): RestoreTimings {
  const end = endedAt.getTime();
  const approvedAt = timeOf((state.lease as { acquiredAt?: unknown } | undefined)?.acquiredAt);
  const phases = (state.phases ?? {}) as Record<string, { startedAt?: unknown } | undefined>;
  const marks: Array<{ phase: string; at: number }> = [];
  if (approvedAt !== undefined) marks.push({ phase: "safety snapshot", at: approvedAt });
  for (const { key, label } of barrierPhases) {
    const at = timeOf(
      key === "health" ? (state.health as { startedAt?: unknown })?.startedAt : phases[key]?.startedAt,
    );
    if (at !== undefined) marks.push({ phase: label, at });
  }
  const rollbackAt = timeOf((state.rollback as { startedAt?: unknown } | undefined)?.startedAt);
  if (rollbackAt !== undefined) marks.push({ phase: "rollback", at: rollbackAt });
  const stoppedAt = timeOf(phases.stop_apiserver?.startedAt);
  const restartedAt = timeOf(phases.finish?.startedAt);
  const startedAt = timeOf(executionStartedAt);
  return {
    ...(startedAt === undefined ? {} : { totalMs: between(startedAt, end) }),
    ...(approvedAt === undefined ? {} : { sinceApprovalMs: between(approvedAt, end) }),
    ...(stoppedAt === undefined
      ? {}
      : {
          outageMs: between(stoppedAt, restartedAt ?? end),
          outageStartedAt: new Date(stoppedAt).toISOString(),
          outageEnded: restartedAt !== undefined,
        }),
    phases: marks.map((mark, index) => ({
      phase: mark.phase,
      ms: between(mark.at, marks[index + 1]?.at ?? end),
    })),
  };
}

/** The notice's lines on time; none when the state holds no timestamp. */
export function timingLines(timings: RestoreTimings, rollbackDone: boolean): string[] {
  const lines: string[] = [];
  const took = [
    timings.sinceApprovalMs === undefined
      ? undefined
      : `${formatDuration(timings.sinceApprovalMs)} after approval`,
    timings.totalMs === undefined
      ? undefined
      : `${formatDuration(timings.totalMs)} since the execution started${timings.sinceApprovalMs === undefined ? "" : ", the wait for approval included"}`,
  ].filter((part): part is string => part !== undefined);
  if (took.length > 0) lines.push(`Took:      ${took.join("; ")}`);
  if (timings.outageMs !== undefined) {
    lines.push(
      timings.outageEnded
        ? `Outage:    ${formatDuration(timings.outageMs)} without the Kubernetes API, from the stop-apiserver barrier until start-apiserver's had every API server back`
        : `Outage:    the API servers were told to stop at ${timings.outageStartedAt}, ${formatDuration(timings.outageMs)} before this notice; ${rollbackDone ? "the rollback started them again, without waiting for them to answer ready" : "they may still be down"}`,
    );
  }
  if (timings.phases.length > 0) {
    lines.push(
      `Phases:    ${timings.phases.map(({ phase, ms }) => `${phase} ${formatDuration(ms)}`).join(", ")}`,
    );
  }
  return lines;
}

/** `850 ms`, `4.2 s`, `42 s`, `4 min 31 s`, `2 h 05 min`: as precise as a person reading it needs. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)} s`;
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")} min`;
}

function timeOf(value: unknown): number | undefined {
  if (typeof value !== "string") return undefined;
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : time;
}

/** Step Functions' clock (the execution's start) and a function's may differ by milliseconds: never below 0. */
function between(from: number, to: number): number {
  return Math.max(0, to - from);
}
