// Runs the backup and restore state machines on this machine with the local stand-ins: SNS publishes
// are recorded, a restore's approval is answered by the caller, its safety snapshot is a nested local
// backup execution, and Systems Manager's RunShellScript runs the agent's commands as local processes.
import type { ChildProcess } from "node:child_process";
import { consoleLink } from "../../lambdas/core/backup/mark-failed-step.js";
import { ApprovalTokens } from "../../lambdas/core/catalogue/approval-tokens.js";
import { agentExecutionTimeoutSeconds } from "../../lambdas/core/restore/restore-timeouts.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import { listenToStepProgress, type StepProgress } from "../../lambdas/handlers/shared/step-progress.js";
import { backupFunctions } from "./backup-functions.js";
import { waitForApprovalAnswer } from "./local-approval.js";
import { LocalRunCommand } from "./local-run-command.js";
import {
  type LocalRunResult,
  type PublishedMessage,
  runLocalStateMachine,
  type StateEvent,
} from "./local-state-machine.js";
import { restoreFunctions } from "./restore-functions.js";

const onCallTopicArn = "arn:aws:sns:local:000000000000:etcd-backup-on-call";
const backupStateMachineArn = "arn:aws:states:local:000000000000:stateMachine:backup";

export interface WorkflowHooks {
  /**
   * The execution's name (a restore is approved by it, `status NAME --local` finds it, as `backup|restore
   * --local` record it); a fresh id without it.
   */
  executionName?: string;
  onEvent?: (event: StateEvent, machine: "backup" | "restore") => void;
  /** What the SNS topic would carry, as localNotice words it for a local execution. */
  onPublish?: (message: PublishedMessage) => void;
  /** Retry pauses in ms (0 in tests); the definition's own otherwise. */
  retryIntervalMs?: number;
  /** A backup's long steps' bytes so far (streaming, reading back), at every chunk. */
  onProgress?: (progress: StepProgress) => void;
}

export async function runLocalBackup(
  input: Record<string, unknown>,
  hooks: WorkflowHooks = {},
): Promise<LocalRunResult> {
  // The handlers run in this process: their live progress is heard here.
  const stopListening = hooks.onProgress ? listenToStepProgress(hooks.onProgress) : () => {};
  try {
    return await runLocalStateMachine({
      definition: "backup.asl.json",
      functions: backupFunctions,
      substitutions: { OnCallTopicArn: onCallTopicArn },
      input,
      executionName: hooks.executionName,
      retryIntervalMs: hooks.retryIntervalMs,
      onPublish: localPublisher(hooks),
      onEvent: (event) => hooks.onEvent?.(event, "backup"),
    });
  } finally {
    stopListening();
  }
}

export interface RestoreHooks extends WorkflowHooks {
  /**
   * Called once the approval was requested and recorded: the moment to answer it (the demo does here;
   * a person runs `etcd-backup approve --local`). The waiting step polls for the answer either way.
   */
  onApprovalRequested?: (executionName: string) => void | Promise<void>;
  /** Added to each local agent's environment (a test's way to make one misbehave). */
  agentEnvironment?: Record<string, string>;
}

export async function runLocalRestore(
  input: Record<string, unknown>,
  hooks: RestoreHooks,
): Promise<LocalRunResult> {
  const runCommand = new LocalRunCommand({
    ETCD_RESTORE_AGENT_POLL_SECONDS: "0.3",
    ...hooks.agentEnvironment,
  });
  let ended = false;
  try {
    const result = await runLocalStateMachine({
      definition: "restore.asl.json",
      functions: restoreFunctions,
      substitutions: {
        OnCallTopicArn: onCallTopicArn,
        BackupStateMachineArn: backupStateMachineArn,
        // Locally an agent is a child process that the run ends: Systems Manager's bound has no stand-in.
        AgentExecutionTimeoutSeconds: String(agentExecutionTimeoutSeconds),
      },
      input,
      retryIntervalMs: hooks.retryIntervalMs,
      waitMs: 500,
      onPublish: localPublisher(hooks),
      onEvent: (event) => hooks.onEvent?.(event, "restore"),
      executionName: hooks.executionName,
      answerTaskToken: async ({ executionName }) => {
        await hooks.onApprovalRequested?.(executionName);
        // The local stack's environment names the catalogue, as it does for the handlers.
        const client = createDynamoDbClient({ endpoint: process.env.DYNAMODB_ENDPOINT });
        try {
          const approvals = new ApprovalTokens({ client, tableName: process.env.CATALOGUE_TABLE ?? "" });
          return await waitForApprovalAnswer(approvals, executionName, {
            pollMs: 500,
          });
        } finally {
          client.destroy();
        }
      },
      startExecution: async (stateMachineArn, nestedInput) => {
        if (stateMachineArn !== backupStateMachineArn)
          throw new Error(`no local state machine ${stateMachineArn}`);
        const nested = await runLocalBackup(nestedInput as Record<string, unknown>, {
          ...hooks,
          executionName: undefined,
        });
        if (nested.status !== "SUCCEEDED") {
          // As Step Functions fails a .sync task: States.TaskFailed, the nested execution described.
          const error = new Error(
            JSON.stringify({
              ExecutionArn: nested.executionArn,
              Status: nested.status,
              Error: nested.error?.name,
              Cause: nested.error?.cause,
            }),
          );
          error.name = "States.TaskFailed";
          throw error;
        }
        return { ExecutionArn: nested.executionArn, Status: nested.status, Output: nested.output };
      },
      sendCommand: async (parameters) => runCommand.send(parameters),
      getCommandInvocation: async (parameters) => runCommand.invocation(parameters),
    });
    ended = true;
    return result;
  } finally {
    // An execution may end before a running agent has read its last plan (the finish barrier also counts
    // an agent that reported start-apiserver done): as on a node, where nothing stops it, it gets the time
    // to report before it is stopped. After a throw, nothing waits.
    const agents = runCommand.processes;
    if (ended) await exitedWithin(agents, agentFinishGraceMs);
    for (const agent of agents) if (agent.exitCode === null) agent.kill("SIGTERM");
  }
}

function localPublisher(hooks: WorkflowHooks) {
  const { onPublish } = hooks;
  if (!onPublish) return undefined;
  const recorded = hooks.executionName !== undefined;
  return (message: PublishedMessage, executionArn: string) =>
    onPublish(localNotice(message, executionArn, { recorded }));
}

/**
 * A notice as a local execution's reader can use it: the handlers link it to the execution's page in
 * the Step Functions console, which a local execution has not; the line names the command that shows
 * the execution instead (a recorded one), or says there is none (its ARN is on the notice's Execution
 * line). Any other text is the handlers' own, as on AWS.
 */
export function localNotice(
  message: PublishedMessage,
  executionArn: string,
  { recorded }: { recorded: boolean },
): PublishedMessage {
  const link = consoleLink(executionArn);
  const label = "Console:";
  const lines = message.message.split("\n").map((line) => {
    if (!line.startsWith(label) || !line.endsWith(link)) return line;
    const padding = line.slice(label.length, line.length - link.length);
    if (padding.trim() !== "") return line;
    const name = executionArn.split(":").at(-1) ?? executionArn;
    return recorded
      ? `${"Status:".padEnd(label.length)}${padding}etcd-backup status ${name} --local (a local execution has no console page)`
      : `${label}${padding}none: a local execution has no console page`;
  });
  return { ...message, message: lines.join("\n") };
}

/** Long enough for an agent polling every 0.3 s to read its plan and write its status. */
const agentFinishGraceMs = 10_000;

async function exitedWithin(children: ChildProcess[], timeoutMs: number): Promise<void> {
  const running = children.filter((child) => child.exitCode === null && child.signalCode === null);
  if (running.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const exits = running.map((child) => new Promise((resolve) => child.once("exit", resolve)));
  await Promise.race([
    Promise.all(exits),
    new Promise((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

/** The restore's barrier polls (Wait_, Is_…_Done, Check_…): repeated every few seconds, not worth a line. */
export function isBarrierPollingState(state: string): boolean {
  return /^(Wait_|Is_|Check_)/.test(state);
}
