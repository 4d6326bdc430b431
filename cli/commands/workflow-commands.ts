// `etcd-backup backup`, `restore` and `status`: start the deployed workflows and follow their executions
// (with --local, the workflow runs on the local stack instead: local-workflow-command.ts).
import { S3Client } from "@aws-sdk/client-s3";
import { SFNClient, StartExecutionCommand } from "@aws-sdk/client-sfn";
import { defaultStackName, StackOutputs } from "../../infra/stack-outputs.js";
import { flagsFromStack, type StackFlags } from "../deployed-stack.js";
import { exitCodeOf, printStatus } from "../execution-report.js";
import {
  describeExecution,
  type ExecutionStatus,
  executionArnFor,
  pollIntervalMs,
  waitForExecution,
} from "../execution-status.js";
import { ExitCodes } from "../exit-codes.js";
import { type AgentReportSource, agentReportPrinter, withAgentReports } from "../restore-agent-reports.js";
import { printJson } from "../terminal-output.js";

/** Step Functions allows execution names of at most 80 characters. */
const maxExecutionName = 80;

/** `<kind>-<cluster>-<milliseconds>`: sortable, unique, and readable in the console and the approvers' message. */
export function executionName(kind: "backup" | "restore", cluster: string, now = Date.now()): string {
  const stamp = String(now);
  const room = maxExecutionName - kind.length - stamp.length - 2;
  return `${kind}-${cluster.slice(0, room)}-${stamp}`;
}

/** Runs on the local stack: loaded only then, with the local state machine runner and the handlers. */
async function runLocalWorkflow(
  kind: "backup" | "restore",
  input: { cluster: string },
  flags: FollowFlags,
): Promise<number> {
  const { runLocalWorkflowCommand } = await import("./local-workflow-command.js");
  return runLocalWorkflowCommand(kind, executionName(kind, input.cluster), input, flags);
}

export interface FollowFlags {
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
  if (flags.local) return runLocalWorkflow("backup", input, flags);
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
  if (flags.local) return runLocalWorkflow("restore", input, flags);
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
  if (flags.local) {
    const { runLocalStatusCommand } = await import("./local-workflow-command.js");
    return runLocalStatusCommand(execution, flags);
  }
  const executionArn = execution.startsWith("arn:")
    ? execution
    : executionArnFor(await stateMachineOf(execution, flags), execution);
  return withSfn(flags, async (sfn) => {
    if (flags.wait) return follow(sfn, executionArn, flags, pollIntervalMs(flags.pollSeconds));
    return readingStatus(sfn, executionArn, flags, async (read) => {
      const status = await read();
      printStatus(status, flags);
      return exitCodeOf(status);
    });
  });
}

/** Runs `use` with a reader of the execution's status, a running restore's agents included. */
async function readingStatus(
  sfn: SFNClient,
  executionArn: string,
  flags: StackFlags,
  use: (read: () => Promise<ExecutionStatus>) => Promise<number>,
): Promise<number> {
  const reports = deployedAgentReports(flags);
  try {
    return await use(async () =>
      withAgentReports(await describeExecution(sfn, executionArn), reports.source),
    );
  } finally {
    reports.close();
  }
}

/** The deployed stack's bucket and prefix (its outputs, read once) and an S3 client, when first needed. */
function deployedAgentReports(flags: StackFlags): {
  source: () => Promise<AgentReportSource>;
  close(): void;
} {
  let source: Promise<AgentReportSource> | undefined;
  let s3: S3Client | undefined;
  return {
    source: () => {
      source ??= flagsFromStack(flags, {
        bucket: StackOutputs.snapshotBucketName,
        prefix: StackOutputs.snapshotPrefix,
      }).then(({ bucket, prefix }) => {
        s3 = new S3Client(flags.region ? { region: flags.region } : {});
        return { bucket, prefix, s3 };
      });
      return source;
    },
    close: () => s3?.destroy(),
  };
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
  // A bad --poll-seconds is refused before anything starts, not after.
  const pollMs = pollIntervalMs(flags.pollSeconds);
  return withSfn(flags, async (sfn) => {
    const reply = await sfn.send(
      new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(input) }),
    );
    const executionArn = reply.executionArn ?? executionArnFor(stateMachineArn, name);
    const started = { executionArn, executionName: name, input };
    if (flags.wait) {
      process.stderr.write(`started ${name}; ${nextStep(name)}\n`);
      return follow(sfn, executionArn, flags, pollMs);
    }
    if (flags.json) printJson(started);
    else process.stdout.write(`started: ${name}\n${nextStep(name)}\n`);
    return ExitCodes.ok;
  });
}

async function follow(
  sfn: SFNClient,
  executionArn: string,
  flags: StackFlags & FollowFlags,
  pollMs: number,
): Promise<number> {
  return readingStatus(sfn, executionArn, flags, async (read) => {
    const status = await waitForExecution(read, {
      pollMs,
      onChange: (current) => {
        if (current.status === "RUNNING") process.stderr.write(`${current.name}: running\n`);
      },
      onRead: agentReportPrinter(),
    });
    printStatus(status, flags);
    return exitCodeOf(status);
  });
}

const stackFlag = (flags: StackFlags) => (flags.stack === defaultStackName ? "" : ` --stack ${flags.stack}`);
