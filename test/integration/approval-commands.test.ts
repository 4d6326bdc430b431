// `etcd-backup approve|reject` against a deployed stack: the task token is read from the catalogue (here
// dynalite, a real DynamoDB stand-in) and the answer goes to Step Functions, whose API has no local
// stand-in and is mocked with aws-sdk-client-mock, answering as the service does.
import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient, TaskTimedOut } from "@aws-sdk/client-sfn";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ExitCodes } from "../../cli/exit-codes.js";
import { ApprovalTokens, approvalRejectedError } from "../../lambdas/core/catalogue/approval-tokens.js";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import { runCliInProcess } from "../support/cli-in-process.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "../support/dynamodb-server.js";

const sfn = mockClient(SFNClient);
const tableName = "catalogue";
let dynamo: LocalDynamoDb;
let approvals: ApprovalTokens;

beforeAll(async () => {
  dynamo = await startLocalDynamoDb();
  const client = createDynamoDbClient({ endpoint: dynamo.endpoint });
  await createCatalogueTable(client, tableName);
  approvals = new ApprovalTokens({ client, tableName });
});

afterEach(() => sfn.reset());
afterAll(async () => {
  sfn.restore();
  await dynamo?.stop();
});

/** A restore waiting for approval, as the request-approval step leaves it. */
async function waiting(executionName: string) {
  await approvals.save({
    targetCluster: "prod-eu-1",
    executionName,
    executionArn: `arn:aws:states:eu-west-1:111122223333:execution:Restore:${executionName}`,
    taskToken: `token-of-${executionName}`,
    snapshotId: "20261125T030000Z-abc",
    requestedAt: "2026-11-25T03:05:00Z",
    expiresAt: Math.floor(Date.now() / 1000) + 3600,
  });
}

/** `etcd-backup ARGS` against the test's catalogue table. */
const cli = (args: string[]) =>
  runCliInProcess([...args, "--table", tableName, "--dynamodb-endpoint", dynamo.endpoint]);

const stillWaiting = async (name: string) =>
  approvals.find(name).then(
    () => true,
    () => false,
  );

describe("etcd-backup approve and reject against a deployed stack", () => {
  it("approve sends the catalogued token with who approved, and consumes it", async () => {
    await waiting("restore-a");
    sfn.on(SendTaskSuccessCommand).resolves({});
    const result = await cli(["approve", "restore-a", "--by", "sre-lead"]);
    expect(result.code, result.stderr).toBe(ExitCodes.ok);
    expect(result.stdout).toContain("approved the restore of prod-eu-1 from 20261125T030000Z-abc");
    expect(sfn.commandCalls(SendTaskSuccessCommand).map((call) => call.args[0].input)).toEqual([
      { taskToken: "token-of-restore-a", output: JSON.stringify({ approved: true, approvedBy: "sre-lead" }) },
    ]);
    expect(await stillWaiting("restore-a")).toBe(false);
  });

  it("reject fails the task with the error the state machine catches, and the reason", async () => {
    await waiting("restore-b");
    sfn.on(SendTaskFailureCommand).resolves({});
    const result = await cli(["reject", "restore-b", "--by", "sre-lead", "--reason", "wrong snapshot"]);
    expect(result.code, result.stderr).toBe(ExitCodes.ok);
    expect(sfn.commandCalls(SendTaskFailureCommand).map((call) => call.args[0].input)).toEqual([
      { taskToken: "token-of-restore-b", error: approvalRejectedError, cause: "sre-lead: wrong snapshot" },
    ]);
    expect(await stillWaiting("restore-b")).toBe(false);
  });

  it("says that a restore whose approval timed out no longer waits, and drops its stale token", async () => {
    await waiting("restore-c");
    sfn.on(SendTaskSuccessCommand).rejects(new TaskTimedOut({ message: "Task Timed Out", $metadata: {} }));
    const result = await cli(["approve", "restore-c"]);
    expect(result.code).toBe(ExitCodes.notFound);
    expect(result.stderr).toContain(
      "restore restore-c no longer waits for an answer: its approval timed out or its execution ended",
    );
    expect(await stillWaiting("restore-c")).toBe(false);
  });

  it("keeps the token when Step Functions fails for another reason, so the answer can be sent again", async () => {
    await waiting("restore-d");
    sfn
      .on(SendTaskSuccessCommand)
      .rejects(Object.assign(new Error("Rate exceeded"), { name: "ThrottlingException" }));
    const result = await cli(["approve", "restore-d"]);
    expect(result.code).not.toBe(ExitCodes.ok);
    expect(result.stderr).toContain("Rate exceeded");
    expect(await stillWaiting("restore-d")).toBe(true);
  });
});
