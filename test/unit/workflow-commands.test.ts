// `etcd-backup backup`, `restore` and `status` against a deployed stack. Step Functions' API has no
// local stand-in (aws-local-stepfunctions runs definitions, not the service's API): it is mocked with
// aws-sdk-client-mock, answering as the service does.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  SFNClient,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { executionName } from "../../cli/commands/workflow-commands.js";
import { approvalState } from "../../cli/execution-report.js";
import { executionArnFor } from "../../cli/execution-status.js";
import { ExitCodes } from "../../cli/exit-codes.js";
import { approvalRejectedError } from "../../lambdas/core/catalogue/approval-tokens.js";
import { runCliInProcess } from "../support/cli-in-process.js";

const sfn = mockClient(SFNClient);
const backupMachine = "arn:aws:states:eu-west-1:111122223333:stateMachine:Backup";
const restoreMachine = "arn:aws:states:eu-west-1:111122223333:stateMachine:Restore";

afterEach(() => sfn.reset());
afterAll(() => sfn.restore());

const cli = runCliInProcess;

let eventId = 0;
const event = (type: string, details: Partial<HistoryEvent> = {}): HistoryEvent => ({
  id: ++eventId,
  timestamp: new Date("2026-11-25T03:00:00Z"),
  type: type as HistoryEvent["type"],
  ...details,
});

describe("execution names and ARNs", () => {
  it("keeps names within Step Functions' 80 characters for the longest cluster name", () => {
    const cluster = "c".repeat(63);
    const name = executionName("restore", cluster, 1_764_000_000_000);
    expect(name.length).toBeLessThanOrEqual(80);
    expect(name).toMatch(/^restore-c+-1764000000000$/);
    expect(executionName("backup", "prod-eu", 1_764_000_000_000)).toBe("backup-prod-eu-1764000000000");
  });

  it("builds an execution's ARN from its state machine's", () => {
    expect(executionArnFor(backupMachine, "backup-prod-eu-1")).toBe(
      "arn:aws:states:eu-west-1:111122223333:execution:Backup:backup-prod-eu-1",
    );
    expect(executionArnFor(backupMachine, "arn:aws:states:x")).toBe("arn:aws:states:x");
  });
});

describe("etcd-backup backup", () => {
  it("starts the backup workflow now, tagged on-demand, and says how to follow it", async () => {
    sfn.on(StartExecutionCommand).callsFake((input: { name: string }) => ({
      executionArn: executionArnFor(backupMachine, input.name),
      startDate: new Date(),
    }));
    const result = await cli([
      "backup",
      "--cluster",
      "prod-eu",
      "--tag",
      "pre-upgrade",
      "--state-machine-arn",
      backupMachine,
      "--json",
    ]);
    expect(result.code).toBe(ExitCodes.ok);
    const [call] = sfn.commandCalls(StartExecutionCommand);
    expect(call?.args[0].input.stateMachineArn).toBe(backupMachine);
    expect(JSON.parse(call?.args[0].input.input ?? "")).toEqual({
      cluster: "prod-eu",
      tags: ["on-demand", "pre-upgrade"],
    });
    const printed = JSON.parse(result.stdout) as { executionName: string; executionArn: string };
    expect(printed.executionName).toMatch(/^backup-prod-eu-\d+$/);
    expect(printed.executionArn).toBe(executionArnFor(backupMachine, printed.executionName));
  });

  it("with --wait follows the execution and prints the snapshot it stored", async () => {
    sfn.on(StartExecutionCommand).callsFake((input: { name: string }) => ({
      executionArn: executionArnFor(backupMachine, input.name),
      startDate: new Date(),
    }));
    const output = {
      snapshot: { result: { snapshotId: "20261125T030000Z-abc123", bytes: 4096, sha256: "ab".repeat(32) } },
    };
    sfn
      .on(DescribeExecutionCommand)
      .resolvesOnce({ status: "RUNNING", name: "n", startDate: new Date(), stateMachineArn: backupMachine })
      .resolvesOnce({ status: "RUNNING", name: "n", startDate: new Date(), stateMachineArn: backupMachine })
      .resolves({
        status: "SUCCEEDED",
        name: "n",
        startDate: new Date(),
        stopDate: new Date(),
        stateMachineArn: backupMachine,
        output: JSON.stringify(output),
      });
    const result = await cli([
      "backup",
      "--cluster",
      "prod-eu",
      "--state-machine-arn",
      backupMachine,
      "--wait",
      "--poll-seconds",
      "0.01",
    ]);
    expect(result.code).toBe(ExitCodes.ok);
    expect(sfn.commandCalls(DescribeExecutionCommand)).toHaveLength(3);
    expect(result.stdout).toMatch(/SUCCEEDED/);
    expect(result.stdout).toMatch(/snapshot 20261125T030000Z-abc123 \(4096 bytes, sha256 (ab){32}\)/);
  });
});

describe("etcd-backup backup --poll-seconds", () => {
  it.each(["abc", "1m", "0", "-5"])(
    "refuses %j in one line with exit code 2, before starting anything",
    async (value) => {
      const result = await cli([
        "backup",
        "--cluster",
        "prod-eu",
        "--state-machine-arn",
        backupMachine,
        "--wait",
        "--poll-seconds",
        value,
      ]);
      expect(result.code).toBe(ExitCodes.usage);
      expect(result.stderr).toContain(`--poll-seconds: expected a number of seconds above 0, got "${value}"`);
      expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(0);
    },
  );
});

describe("etcd-backup status", () => {
  it("names the step that failed and its error, and exits as the local command would", async () => {
    const executionArn = executionArnFor(backupMachine, "backup-prod-eu-1");
    sfn.on(DescribeExecutionCommand, { executionArn }).resolves({
      status: "FAILED",
      name: "backup-prod-eu-1",
      startDate: new Date(),
      stopDate: new Date(),
      stateMachineArn: backupMachine,
      error: "BackupFailed",
      cause: "The backup failed; on-call was notified with the details.",
    });
    const failure = JSON.stringify({
      errorType: "EtcdUnavailableError",
      errorMessage: "etcd at https://10.0.1.5:2379 is unreachable: connect ECONNREFUSED",
    });
    // Newest first, as reverseOrder returns them: the failure path's tasks succeeded after the
    // snapshot's last attempt failed.
    sfn.on(GetExecutionHistoryCommand, { executionArn }).resolves({
      events: [
        event("ExecutionFailed", { executionFailedEventDetails: { error: "BackupFailed" } }),
        event("TaskSucceeded"),
        event("TaskStateEntered", { stateEnteredEventDetails: { name: "NotifyOnCall" } }),
        event("TaskFailed", {
          taskFailedEventDetails: {
            resourceType: "lambda",
            resource: "invoke",
            error: "EtcdUnavailableError",
            cause: failure,
          },
        }),
        event("TaskStarted"),
        event("TaskScheduled"),
        event("TaskStateEntered", { stateEnteredEventDetails: { name: "TakeSnapshot" } }),
      ],
    });
    const result = await cli(["status", "backup-prod-eu-1", "--backup-state-machine-arn", backupMachine]);
    expect(result.stdout).toMatch(
      /failed at TakeSnapshot: EtcdUnavailableError: etcd at https:\/\/10\.0\.1\.5:2379 is unreachable/,
    );
    expect(result.code).toBe(ExitCodes.etcdUnavailable);

    const json = await cli(["status", executionArn, "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      status: "FAILED",
      failure: { state: "TakeSnapshot", error: "EtcdUnavailableError" },
    });
  });

  it("reports a restore's end without its history, which the operator may not read", async () => {
    const executionArn = executionArnFor(restoreMachine, "restore-prod-eu-1");
    sfn.on(DescribeExecutionCommand, { executionArn }).resolves({
      status: "FAILED",
      name: "restore-prod-eu-1",
      startDate: new Date(),
      stateMachineArn: restoreMachine,
      error: "RestoreFailed",
      cause: "The restore failed; on-call was notified with what was rolled back.",
    });
    sfn
      .on(GetExecutionHistoryCommand)
      .rejects(Object.assign(new Error("not authorized"), { name: "AccessDeniedException" }));
    const result = await cli(["status", "restore-prod-eu-1", "--restore-state-machine-arn", restoreMachine]);
    expect(result.stdout).toMatch(/restore-prod-eu-1: FAILED/);
    expect(result.stdout).toMatch(/failed: RestoreFailed: The restore failed; on-call was notified/);
    expect(result.code).toBe(ExitCodes.failure);
  });

  it("exits 8, apart from failures, for a restore turned down, not approved in time, or aborted", async () => {
    const turnedDown = (name: string, waitEvent: HistoryEvent) => {
      const executionArn = executionArnFor(restoreMachine, name);
      sfn.on(DescribeExecutionCommand, { executionArn }).resolves({
        status: "FAILED",
        name,
        startDate: new Date(),
        stateMachineArn: restoreMachine,
        error: "RestoreFailed",
      });
      sfn.on(GetExecutionHistoryCommand, { executionArn }).resolves({
        events: [
          event("ExecutionFailed"),
          event("TaskSucceeded"),
          event("TaskStateEntered", { stateEnteredEventDetails: { name: "NotifyRestoreFailed" } }),
          waitEvent,
          event("TaskStateEntered", { stateEnteredEventDetails: { name: approvalState } }),
        ],
      });
    };
    turnedDown(
      "restore-rejected",
      event("TaskFailed", {
        taskFailedEventDetails: {
          resourceType: "lambda",
          resource: "invoke.waitForTaskToken",
          error: approvalRejectedError,
          cause: "sre: no",
        },
      }),
    );
    turnedDown(
      "restore-unanswered",
      event("TaskTimedOut", {
        taskTimedOutEventDetails: {
          resourceType: "lambda",
          resource: "invoke.waitForTaskToken",
          error: "States.Timeout",
        },
      }),
    );
    sfn
      .on(DescribeExecutionCommand, { executionArn: executionArnFor(restoreMachine, "restore-stopped") })
      .resolves({
        status: "ABORTED",
        name: "restore-stopped",
        startDate: new Date(),
        stateMachineArn: restoreMachine,
      });
    sfn
      .on(GetExecutionHistoryCommand, { executionArn: executionArnFor(restoreMachine, "restore-stopped") })
      .resolves({
        events: [event("ExecutionAborted")],
      });
    for (const name of ["restore-rejected", "restore-unanswered", "restore-stopped"]) {
      const result = await cli(["status", name, "--restore-state-machine-arn", restoreMachine]);
      expect(result.code, name).toBe(ExitCodes.stopped);
    }
    // The waiting state is the definition's own.
    const definition = JSON.parse(
      readFileSync(join(import.meta.dirname, "../../statemachine/restore.asl.json"), "utf8"),
    );
    expect(definition.States[approvalState].Resource).toMatch(/waitForTaskToken$/);
  });

  it("exits 0 for an execution still running", async () => {
    sfn.on(DescribeExecutionCommand).resolves({
      status: "RUNNING",
      name: "restore-prod-eu-2",
      startDate: new Date(),
      stateMachineArn: restoreMachine,
    });
    const result = await cli(["status", "restore-prod-eu-2", "--restore-state-machine-arn", restoreMachine]);
    expect(result.code).toBe(ExitCodes.ok);
    expect(result.stdout).toMatch(/restore-prod-eu-2: RUNNING/);
    expect(sfn.commandCalls(GetExecutionHistoryCommand)).toHaveLength(0);
  });
});
