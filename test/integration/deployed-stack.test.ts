// Against AWS the CLI finds the catalogue table, the bucket and the restore state machine from the
// deployed stack's outputs. CloudFormation has no local stand-in: it is mocked (aws-sdk-client-mock);
// the catalogue the names lead to is the real one, in dynalite.
import { CloudFormationClient, DescribeStacksCommand } from "@aws-sdk/client-cloudformation";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { DescribeExecutionCommand, SFNClient } from "@aws-sdk/client-sfn";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { flagsFromStack } from "../../cli/deployed-stack.js";
import { runCli } from "../../cli/main.js";
import { StackOutputs } from "../../infra/stack-outputs.js";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { InvalidInputError } from "../../lambdas/core/errors.js";
import { restoreRunPrefix } from "../../lambdas/core/restore/agent-status-report.js";
import { renderStatus } from "../../lambdas/core/restore/restore-plan.js";
import { createDynamoDbClient, loopbackCredentials } from "../../lambdas/core/store/aws-clients.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "../support/dynamodb-server.js";
import { startLocalS3 } from "../support/s3-server.js";

const cloudFormation = mockClient(CloudFormationClient);
const outputs = [
  { OutputKey: StackOutputs.catalogueTableName, OutputValue: "EtcdBackup-CatalogueTable1234" },
  { OutputKey: StackOutputs.snapshotBucketName, OutputValue: "etcdbackup-storagebucket-abcd" },
  {
    OutputKey: StackOutputs.restoreStateMachineArn,
    OutputValue: "arn:aws:states:eu-west-1:1:stateMachine:Restore",
  },
  { OutputKey: "SomethingElse", OutputValue: "ignored" },
];

let dynamo: LocalDynamoDb;

beforeAll(async () => {
  dynamo = await startLocalDynamoDb();
  const client = createDynamoDbClient({ endpoint: dynamo.endpoint });
  await createCatalogueTable(client, "EtcdBackup-CatalogueTable1234");
  const catalogue = new CatalogueRepository({ client, tableName: "EtcdBackup-CatalogueTable1234" });
  await catalogue.recordStarted({
    cluster: "prod-eu",
    snapshotId: "20261124T030000Z-abcdef",
    bucket: "etcdbackup-storagebucket-abcd",
    key: "etcd-backup/prod-eu/2026/11/24/20261124T030000Z-abcdef.db",
    sourceMember: "member-1",
    etcdVersion: "3.4.23",
    startedAt: new Date("2026-11-24T03:00:00Z"),
    tags: ["scheduled"],
  });
  client.destroy();
});

afterEach(() => {
  cloudFormation.reset();
});

afterAll(async () => {
  cloudFormation.restore();
  await dynamo?.stop();
});

describe("flagsFromStack", () => {
  it("reads what a flag leaves out from the named stack's outputs", async () => {
    cloudFormation.on(DescribeStacksCommand, { StackName: "EtcdBackup-prod" }).resolves({
      Stacks: [
        {
          StackName: "EtcdBackup-prod",
          CreationTime: new Date(),
          StackStatus: "UPDATE_COMPLETE",
          Outputs: outputs,
        },
      ],
    });
    const names = await flagsFromStack(
      { stack: "EtcdBackup-prod", bucket: "my-own-bucket" },
      { table: StackOutputs.catalogueTableName, bucket: StackOutputs.snapshotBucketName },
    );
    expect(names).toEqual({ table: "EtcdBackup-CatalogueTable1234", bucket: "my-own-bucket" });
    expect(cloudFormation.commandCalls(DescribeStacksCommand)).toHaveLength(1);
  });

  it("never reaches CloudFormation when every name is given (local runs)", async () => {
    const names = await flagsFromStack(
      { stack: "EtcdBackup", table: "local" },
      { table: StackOutputs.catalogueTableName },
    );
    expect(names).toEqual({ table: "local" });
    expect(cloudFormation.calls()).toHaveLength(0);
  });

  it("names the flag to give when the stack lacks the output", async () => {
    cloudFormation.on(DescribeStacksCommand).resolves({
      Stacks: [{ StackName: "Other", CreationTime: new Date(), StackStatus: "CREATE_COMPLETE", Outputs: [] }],
    });
    const error = await flagsFromStack(
      { stack: "Other" },
      { stateMachineArn: StackOutputs.restoreStateMachineArn },
    ).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as Error).message).toMatch(
      /stack Other has no output RestoreStateMachineArn: give --state-machine-arn/,
    );
  });

  it("turns a missing stack or missing credentials into one clear input error", async () => {
    const missing = Object.assign(new Error("Stack with id Nope does not exist"), {
      name: "ValidationError",
    });
    cloudFormation.on(DescribeStacksCommand).rejects(missing);
    await expect(
      flagsFromStack({ stack: "Nope", region: "eu-west-1" }, { table: StackOutputs.catalogueTableName }),
    ).rejects.toThrow(
      /could not read the outputs of stack Nope \(Stack with id Nope does not exist\): check --stack, --region/,
    );
  });
});

describe("etcd-backup list against a deployed stack", () => {
  it("finds the catalogue table from the default stack's outputs", async () => {
    cloudFormation.on(DescribeStacksCommand, { StackName: "EtcdBackup" }).resolves({
      Stacks: [
        {
          StackName: "EtcdBackup",
          CreationTime: new Date(),
          StackStatus: "CREATE_COMPLETE",
          Outputs: outputs,
        },
      ],
    });
    const printed: string[] = [];
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      printed.push(String(chunk));
      return true;
    });
    try {
      const code = await runCli([
        "list",
        "--cluster",
        "prod-eu",
        "--dynamodb-endpoint",
        dynamo.endpoint,
        "--json",
      ]);
      expect(code).toBe(0);
    } finally {
      write.mockRestore();
    }
    const page = JSON.parse(printed.join("")) as { snapshots: { snapshotId: string }[] };
    expect(page.snapshots.map((row) => row.snapshotId)).toEqual(["20261124T030000Z-abcdef"]);
  });
});

describe("etcd-backup status of a running restore against a deployed stack", () => {
  it("lists each agent's last report, read from the stack's bucket (Step Functions mocked, S3 in s3rver)", async () => {
    const bucket = "etcdbackup-storagebucket-abcd";
    const s3 = await startLocalS3(bucket);
    const sfn = mockClient(SFNClient);
    const name = "restore-prod-eu-1764000000000";
    const restoreMachine = "arn:aws:states:eu-west-1:1:stateMachine:Restore";
    try {
      cloudFormation.on(DescribeStacksCommand, { StackName: "EtcdBackup" }).resolves({
        Stacks: [
          {
            StackName: "EtcdBackup",
            CreationTime: new Date(),
            StackStatus: "CREATE_COMPLETE",
            Outputs: [...outputs, { OutputKey: StackOutputs.snapshotPrefix, OutputValue: "etcd-backup" }],
          },
        ],
      });
      sfn.on(DescribeExecutionCommand).resolves({
        executionArn: `arn:aws:states:eu-west-1:1:execution:Restore:${name}`,
        stateMachineArn: restoreMachine,
        name,
        status: "RUNNING",
        startDate: new Date("2026-11-25T16:00:00Z"),
        input: JSON.stringify({ cluster: "prod-eu", snapshotId: "20261124T030000Z-abcdef" }),
      });
      await s3.client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: `${restoreRunPrefix("etcd-backup", "prod-eu", name)}cp-0/status.json`,
          Body: renderStatus({
            restoreId: name,
            member: "cp-0",
            phase: "restore",
            state: "working",
            message: "downloading the snapshot: 3120 MiB of 8192 MiB (38%)",
            updatedAt: "2026-11-25T16:05:00.000Z",
            log: [],
          }),
        }),
      );
      // The operator's S3 is the stand-in: the SDK's own endpoint variable points there.
      vi.stubEnv("AWS_ENDPOINT_URL_S3", s3.endpoint);
      vi.stubEnv("AWS_ACCESS_KEY_ID", loopbackCredentials.accessKeyId);
      vi.stubEnv("AWS_SECRET_ACCESS_KEY", loopbackCredentials.secretAccessKey);
      vi.stubEnv("AWS_REGION", "eu-west-1");
      const printed: string[] = [];
      const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
        printed.push(String(chunk));
        return true;
      });
      try {
        expect(await runCli(["status", name, "--restore-state-machine-arn", restoreMachine])).toBe(0);
      } finally {
        write.mockRestore();
      }
      expect(printed.join("")).toContain(
        `${name}: RUNNING\n  started  2026-11-25T16:00:00.000Z\n  agents\n    cp-0: restore working — downloading the snapshot: 3120 MiB of 8192 MiB (38%)\n`,
      );
    } finally {
      vi.unstubAllEnvs();
      sfn.restore();
      await s3.stop();
    }
  });
});
