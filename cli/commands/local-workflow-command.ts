// `etcd-backup backup|restore --local`: the workflow run on the local stack of `etcd-backup local up`, in
// this process — locally there is no Step Functions service to hand the execution to, so the command
// lasts as long as the execution and reports it as `--wait` does against AWS.
import type { S3Client } from "@aws-sdk/client-s3";
import { createS3Client } from "../../lambdas/core/store/aws-clients.js";
import { exitCodeOf, printStatus } from "../execution-report.js";
import { type ExecutionStatus, pollIntervalMs, waitForExecution } from "../execution-status.js";
import { readLocalExecution, recordLocalExecution } from "../local/local-executions.js";
import { useLocalSession } from "../local/local-session.js";
import {
  type LocalRunResult,
  localExecutionArn,
  type PublishedMessage,
  type StateEvent,
} from "../local/local-state-machine.js";
import { isBarrierPollingState, runLocalBackup, runLocalRestore } from "../local/local-workflows.js";
import { agentReportPrinter, withAgentReports } from "../restore-agent-reports.js";
import { createActivityProgress } from "../terminal-output.js";

export async function runLocalWorkflowCommand(
  kind: "backup" | "restore",
  name: string,
  input: { cluster: string },
  flags: { json?: boolean },
): Promise<number> {
  const { environment } = await useLocalSession();
  const progress = createActivityProgress(Boolean(process.stderr.isTTY));
  const say = progress.say;
  say(`${name}: running on the local stack, in this process (keep it open)`);
  const startedAt = new Date().toISOString();
  const executionArn = localExecutionArn(kind, name);
  const journal = recordLocalExecution(environment.workDir, { executionArn, name, startedAt, input });
  let lastPublished = "";
  const hooks = {
    executionName: name,
    onProgress: progress.update,
    onPublish: (message: PublishedMessage) => {
      lastPublished = message.message;
    },
    onEvent: (event: StateEvent, machine: "backup" | "restore") => {
      const run = machine === kind ? machine : `${machine} (safety snapshot)`;
      if (event.type === "entered")
        journal.entered(machine === kind ? event.state : `SafetySnapshot/${event.state}`);
      if (event.type === "entered" && !isBarrierPollingState(event.state)) say(`  ${run} ▶ ${event.state}`);
      if (event.type === "failed") say(`  ${run} ✗ ${event.state} ${event.detail ?? ""}`);
    },
  };
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
  const status = localExecutionStatus(result, name, startedAt);
  journal.finished(status);
  // What the SNS topic would have carried: the failure's details, or the restore's timings and undo.
  if (lastPublished) say(`\nnotified:\n${lastPublished}\n`);
  printStatus(status, flags);
  return exitCodeOf(status);
}

/** A local run as `status` reports a deployed execution. */
function localExecutionStatus(result: LocalRunResult, name: string, startedAt: string): ExecutionStatus {
  // As on AWS, the failure that matters is the failed task's, not the final Fail state's.
  const failedTask = result.states
    .filter((event) => event.type === "failed" && event.stateType !== "Fail")
    .at(-1);
  return {
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
}

/** What `status NAME --local` reports: the record the running command keeps; `--wait` follows it. */
export async function runLocalStatusCommand(
  name: string,
  flags: { json?: boolean; wait?: boolean; pollSeconds?: string },
): Promise<number> {
  const { environment } = await useLocalSession();
  let s3: S3Client | undefined;
  try {
    const source = async () => {
      s3 ??= createS3Client({ endpoint: environment.s3.endpoint });
      return { s3, bucket: environment.bucket, prefix: environment.prefix };
    };
    const read = async () => withAgentReports(await readLocalExecution(environment.workDir, name), source);
    const status = flags.wait
      ? await waitForExecution(read, {
          pollMs: pollIntervalMs(flags.pollSeconds),
          onRead: agentReportPrinter(),
        })
      : await read();
    printStatus(status, flags);
    return exitCodeOf(status);
  } finally {
    s3?.destroy();
  }
}
