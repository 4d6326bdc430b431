// Following a deployed workflow's execution from the CLI: where it is, and, when it failed, which step
// failed and with which error. The workflows end in one Fail state ("BackupFailed", "RestoreFailed")
// after their failure path ran; the error that matters is the failed task's, read from the history.
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  type SFNClient,
  type ExecutionStatus as SfnExecutionStatus,
} from "@aws-sdk/client-sfn";
import { InvalidInputError } from "../lambdas/core/errors.js";
import type { AgentReport } from "../lambdas/core/restore/agent-status-report.js";

export interface ExecutionStatus {
  executionArn: string;
  name: string;
  status: SfnExecutionStatus | "UNKNOWN";
  startedAt?: string;
  stoppedAt?: string;
  /** The execution's output, parsed (on success). */
  output?: unknown;
  /** On failure: the failed task's step and error (its last attempt), else the execution's own. */
  failure?: { state?: string; error?: string; cause?: string };
  /** While it runs, the state it is in (known for local executions). */
  currentState?: string;
  /** The execution's input, parsed. */
  input?: unknown;
  /** A running restore's agents, each one's last report (restore-agent-reports.ts). */
  agents?: AgentReport[];
  /** Why the agents' reports could not be read. */
  agentsUnavailable?: string;
}

/** An execution's ARN from its state machine's ARN and its name (names are unique per state machine). */
export function executionArnFor(stateMachineArn: string, executionName: string): string {
  if (executionName.startsWith("arn:")) return executionName;
  const [prefix, name] = stateMachineArn.split(":stateMachine:");
  if (!prefix || !name) throw new InvalidInputError(`not a state machine ARN: ${stateMachineArn}`);
  return `${prefix}:execution:${name}:${executionName}`;
}

export async function describeExecution(sfn: SFNClient, executionArn: string): Promise<ExecutionStatus> {
  const reply = await sfn.send(new DescribeExecutionCommand({ executionArn }));
  const status: ExecutionStatus = {
    executionArn,
    name: reply.name ?? executionArn.split(":").at(-1) ?? executionArn,
    status: reply.status ?? "UNKNOWN",
    startedAt: reply.startDate?.toISOString(),
    stoppedAt: reply.stopDate?.toISOString(),
    ...(reply.input ? { input: JSON.parse(reply.input) } : {}),
  };
  if (reply.status === "SUCCEEDED" && reply.output) status.output = JSON.parse(reply.output);
  if (reply.status === "FAILED" || reply.status === "TIMED_OUT" || reply.status === "ABORTED") {
    status.failure = (await lastTaskFailure(sfn, executionArn).catch(unlessAccessDenied)) ?? {
      error: reply.error,
      cause: reply.cause,
    };
  }
  return status;
}

/** A restore operator may not read a restore's history (it holds presigned URLs): fall back to less. */
function unlessAccessDenied(error: unknown): undefined {
  if ((error as { name?: string }).name === "AccessDeniedException") return undefined;
  throw error;
}

/** `--poll-seconds` (default 10) in ms, never below 10 ms; anything but a positive number is refused. */
export function pollIntervalMs(pollSeconds: string | undefined): number {
  const seconds = Number(pollSeconds ?? 10);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new InvalidInputError(`--poll-seconds: expected a number of seconds above 0, got "${pollSeconds}"`);
  }
  return Math.max(seconds, 0.01) * 1000;
}

/**
 * Reads the execution's status until it is no longer running; `onChange` hears each new status. `read`
 * asks Step Functions for a deployed execution, the local stack's record for a local one.
 */
export async function waitForExecution(
  read: () => Promise<ExecutionStatus>,
  options: {
    pollMs: number;
    onChange?: (status: ExecutionStatus) => void;
    /** Hears every read, e.g. to show a running restore's agents as they report. */
    onRead?: (status: ExecutionStatus) => void;
  },
): Promise<ExecutionStatus> {
  let last: string | undefined;
  for (;;) {
    const status = await read();
    if (status.status !== last) options.onChange?.(status);
    options.onRead?.(status);
    last = status.status;
    if (status.status !== "RUNNING" && status.status !== "PENDING_REDRIVE") return status;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs));
  }
}

const failureDetails = (event: HistoryEvent) =>
  event.taskFailedEventDetails ??
  event.lambdaFunctionFailedEventDetails ??
  event.taskTimedOutEventDetails ??
  event.lambdaFunctionTimedOutEventDetails;

/**
 * The last failed task attempt before the failure path took over, and the state it belonged to: the
 * retries are older, the failure path's own tasks succeed. Reads the history newest first, a page at
 * a time, and gives up after a few pages (long restores poll for thousands of events).
 */
async function lastTaskFailure(
  sfn: SFNClient,
  executionArn: string,
): Promise<ExecutionStatus["failure"] | undefined> {
  let nextToken: string | undefined;
  let failure: ExecutionStatus["failure"] | undefined;
  for (let page = 0; page < 5; page++) {
    const reply = await sfn.send(
      new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 200, nextToken }),
    );
    for (const event of reply.events ?? []) {
      if (!failure) {
        const details = failureDetails(event);
        if (details) failure = { error: details.error, cause: details.cause };
      } else if (event.type === "TaskStateEntered" && event.stateEnteredEventDetails?.name) {
        return { state: event.stateEnteredEventDetails.name, ...failure };
      }
    }
    nextToken = reply.nextToken;
    if (!nextToken) break;
  }
  return failure;
}
