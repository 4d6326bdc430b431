// `etcd-backup backup`, `restore` and `status`: start the deployed workflows and follow their executions.
import { SFNClient, StartExecutionCommand } from "@aws-sdk/client-sfn";
import { defaultStackName, StackOutputs } from "../../infra/stack-outputs.js";
import { flagsFromStack, type StackFlags } from "../deployed-stack.js";
import {
  describeExecution,
  type ExecutionStatus,
  executionArnFor,
  waitForExecution,
} from "../execution-status.js";
import { ExitCodes, exitCodeFor } from "../exit-codes.js";
import type { PublishedMessage, StateEvent } from "../local/local-state-machine.js";
import { createActivityProgress, printJson } from "../terminal-output.js";

/** Step Functions allows execution names of at most 80 characters. */
const maxExecutionName = 80;

/** `<kind>-<cluster>-<milliseconds>`: sortable, unique, and readable in the console and the approvers' message. */
export function executionName(kind: "backup" | "restore", cluster: string, now = Date.now()): string {
  const stamp = String(now);
  const room = maxExecutionName - kind.length - stamp.length - 2;
  return `${kind}-${cluster.slice(0, room)}-${stamp}`;
}

interface FollowFlags {
  /** Run on the local stack of `etcd-backup local up`, in this process, to the end. */
  local?: boolean;
  wait?: boolean;
  /** Seconds between polls with --wait. */
  pollSeconds?: string;
  json?: boolean;
}

export interface BackupFlags extends StackFlags, FollowFlags {
  /** Default: the stack's BackupStateMachineArn output. */
  stateMachineArn?: string;
  cluster: string;
  tag?: string[];
}

/** Starts the deployed backup state machine now, outside the schedule (before an upgrade, say). */
export async function runBackupCommand(flags: BackupFlags): Promise<number> {
  const input = { cluster: flags.cluster, tags: ["on-demand", ...(flags.tag ?? [])] };
  if (flags.local) return runLocally("backup", input, flags);
  const { stateMachineArn } = await flagsFromStack(flags, {
    stateMachineArn: StackOutputs.backupStateMachineArn,
  });
  return startAndFollow(
    flags,
    stateMachineArn,
    executionName("backup", flags.cluster),
    input,
    (name) => `follow it: etcd-backup status ${name}${stackFlag(flags)}`,
  );
}

export interface RestoreFlags extends StackFlags, FollowFlags {
  /** Default: the stack's RestoreStateMachineArn output. */
  stateMachineArn?: string;
  cluster: string;
  snapshotId: string;
  sourceCluster?: string;
  allowCrossCluster?: boolean;
  allowClusterIdChange?: boolean;
  skipSafetySnapshot?: boolean;
  allowWithoutRevisionBump?: boolean;
}

/** Starts the deployed restore state machine; it waits for approval before it changes anything. */
export async function runRestoreCommand(flags: RestoreFlags): Promise<number> {
  const input = {
    cluster: flags.cluster,
    snapshotId: flags.snapshotId,
    ...(flags.sourceCluster ? { sourceCluster: flags.sourceCluster } : {}),
    ...(flags.allowCrossCluster ? { allowCrossCluster: true } : {}),
    ...(flags.allowClusterIdChange ? { allowClusterIdChange: true } : {}),
    ...(flags.skipSafetySnapshot ? { skipSafetySnapshot: true } : {}),
    ...(flags.allowWithoutRevisionBump ? { allowWithoutRevisionBump: true } : {}),
  };
  if (flags.local) return runLocally("restore", input, flags);
  const { stateMachineArn } = await flagsFromStack(flags, {
    stateMachineArn: StackOutputs.restoreStateMachineArn,
  });
  return startAndFollow(
    flags,
    stateMachineArn,
    executionName("restore", flags.cluster),
    input,
    (name) => `it waits for approval: etcd-backup approve ${name}${stackFlag(flags)}`,
  );
}

export interface StatusFlags extends StackFlags, FollowFlags {
  backupStateMachineArn?: string;
  restoreStateMachineArn?: string;
}

/**
 * Where an execution of either workflow is: by the name `backup` or `restore` printed (which says
 * which state machine ran it), or by its ARN.
 */
export async function runStatusCommand(execution: string, flags: StatusFlags): Promise<number> {
  const executionArn = execution.startsWith("arn:")
    ? execution
    : executionArnFor(await stateMachineOf(execution, flags), execution);
  return withSfn(flags, async (sfn) => {
    if (flags.wait) return follow(sfn, executionArn, flags);
    const status = await describeExecution(sfn, executionArn);
    printStatus(status, flags);
    return exitCodeOf(status);
  });
}

async function stateMachineOf(execution: string, flags: StatusFlags): Promise<string> {
  if (execution.startsWith("restore-")) {
    return (await flagsFromStack(flags, { restoreStateMachineArn: StackOutputs.restoreStateMachineArn }))
      .restoreStateMachineArn;
  }
  // Scheduled backups have generated names; `backup-` is ours, anything else is the schedule's.
  return (await flagsFromStack(flags, { backupStateMachineArn: StackOutputs.backupStateMachineArn }))
    .backupStateMachineArn;
}

async function withSfn(flags: StackFlags, run: (sfn: SFNClient) => Promise<number>): Promise<number> {
  const sfn = new SFNClient(flags.region ? { region: flags.region } : {});
  try {
    return await run(sfn);
  } finally {
    sfn.destroy();
  }
}

/** Starts an execution; with --wait, follows it to its end and exits as it ended. */
async function startAndFollow(
  flags: StackFlags & FollowFlags,
  stateMachineArn: string,
  name: string,
  input: object,
  nextStep: (name: string) => string,
): Promise<number> {
  return withSfn(flags, async (sfn) => {
    const reply = await sfn.send(
      new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(input) }),
    );
    const executionArn = reply.executionArn ?? executionArnFor(stateMachineArn, name);
    const started = { executionArn, executionName: name, input };
    if (flags.wait) {
      process.stderr.write(`started ${name}; ${nextStep(name)}\n`);
      return follow(sfn, executionArn, flags);
    }
    if (flags.json) printJson(started);
    else process.stdout.write(`started: ${name}\n${nextStep(name)}\n`);
    return ExitCodes.ok;
  });
}

/**
 * Runs the workflow on the local stack in this process: locally there is no Step Functions service to
 * hand the execution to, so the command lasts as long as the execution and reports it as `--wait` does.
 */
async function runLocally(
  kind: "backup" | "restore",
  input: { cluster: string },
  flags: FollowFlags,
): Promise<number> {
  const [{ useLocalSession }, { runLocalBackup, runLocalRestore }] = await Promise.all([
    import("../local/local-session.js"),
    import("../local/local-workflows.js"),
  ]);
  await useLocalSession();
  const name = executionName(kind, input.cluster);
  const progress = createActivityProgress(Boolean(process.stderr.isTTY));
  const say = (line: string): void => {
    progress.done();
    process.stderr.write(`${line}\n`);
  };
  say(`${name}: running on the local stack, in this process (keep it open)`);
  let lastPublished = "";
  const hooks = {
    executionName: name,
    onProgress: progress.update,
    onPublish: (message: PublishedMessage) => {
      lastPublished = message.message;
    },
    onEvent: (event: StateEvent, machine: "backup" | "restore") => {
      const run = machine === kind ? machine : `${machine} (safety snapshot)`;
      if (event.type === "entered" && !/^(Wait_|Is_|Check_)/.test(event.state))
        say(`  ${run} ▶ ${event.state}`);
      if (event.type === "failed") say(`  ${run} ✗ ${event.state} ${event.detail ?? ""}`);
    },
  };
  const startedAt = new Date().toISOString();
  const result =
    kind === "backup"
      ? await runLocalBackup(input, hooks)
      : await runLocalRestore(input, {
          ...hooks,
          onApprovalRequested: (waiting) =>
            say(
              `  waiting for approval: etcd-backup approve ${waiting} --local   (or: etcd-backup reject ${waiting} --local --reason "…")`,
            ),
        });
  // As on AWS, the failure that matters is the failed task's, not the final Fail state's.
  const failedTask = result.states
    .filter((event) => event.type === "failed" && event.stateType !== "Fail")
    .at(-1);
  const status: ExecutionStatus = {
    executionArn: result.executionArn,
    name,
    status: result.status,
    startedAt,
    stoppedAt: new Date().toISOString(),
    ...(result.status === "SUCCEEDED" ? { output: result.output } : {}),
    ...(result.error
      ? {
          failure: failedTask
            ? { state: failedTask.state, error: failedTask.detail, cause: failedTask.cause }
            : { error: result.error.name, cause: result.error.cause },
        }
      : {}),
  };
  // What the SNS topic would have carried: the failure's details, or the restore's timings and undo.
  if (lastPublished) say(`\nnotified:\n${lastPublished}\n`);
  printStatus(status, flags);
  return exitCodeOf(status);
}

async function follow(sfn: SFNClient, executionArn: string, flags: FollowFlags): Promise<number> {
  const pollMs = Math.max(Number(flags.pollSeconds ?? 10), 0.01) * 1000;
  const status = await waitForExecution(sfn, executionArn, {
    pollMs,
    onChange: (current) => {
      if (current.status === "RUNNING") process.stderr.write(`${current.name}: running\n`);
    },
  });
  printStatus(status, flags);
  return exitCodeOf(status);
}

function printStatus(status: ExecutionStatus, flags: FollowFlags): void {
  if (flags.json) {
    printJson(status);
    return;
  }
  const lines = [`${status.name}: ${status.status}`];
  if (status.startedAt) lines.push(`  started  ${status.startedAt}`);
  if (status.stoppedAt) lines.push(`  stopped  ${status.stoppedAt}`);
  const snapshot = snapshotOf(status.output);
  if (snapshot)
    lines.push(`  snapshot ${snapshot.snapshotId} (${snapshot.bytes} bytes, sha256 ${snapshot.sha256})`);
  if (status.failure) {
    const where = status.failure.state ? ` at ${status.failure.state}` : "";
    lines.push(
      `  failed${where}: ${status.failure.error ?? "unknown error"}${status.failure.cause ? `: ${causeMessage(status.failure.cause)}` : ""}`,
    );
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

/** The exit code a finished execution maps to: its failed step's error, as the local commands map it. */
function exitCodeOf(status: ExecutionStatus): number {
  if (status.status === "SUCCEEDED" || status.status === "RUNNING") return ExitCodes.ok;
  return exitCodeFor({ name: status.failure?.error });
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

/** Lambda failures carry `{"errorMessage": …}` as their cause; show the message. */
function causeMessage(cause: string): string {
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: string };
    return parsed.errorMessage ?? cause;
  } catch {
    return cause;
  }
}

const stackFlag = (flags: StackFlags) => (flags.stack === defaultStackName ? "" : ` --stack ${flags.stack}`);
