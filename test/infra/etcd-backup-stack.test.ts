import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { App, Stack } from "aws-cdk-lib";
import { Annotations, Match, Template } from "aws-cdk-lib/assertions";
import type * as lambda from "aws-cdk-lib/aws-lambda";
import * as logs from "aws-cdk-lib/aws-logs";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { AslStateMachine, executionArnsOf, placeholdersIn } from "../../infra/asl-state-machine.js";
import { backupSteps } from "../../infra/backup-workflow.js";
import { restoreSteps } from "../../infra/restore-workflow.js";
import { StackOutputs } from "../../infra/stack-outputs.js";
import { CatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import { type BuiltStack, buildStack, projectRoot, resolved, testTargets } from "./stack-fixtures.js";

type Resource = { Type: string; Properties: Record<string, unknown>; DeletionPolicy?: string };
type Statement = {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, unknown>>;
};

/** An ASL `${Name}` placeholder. */
const aslPlaceholder = (name: string): string => `\${${name}}`;
const asList = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);
/** CDK sorts and merges policy resources: compare them as sets. */
const asSet = (values: unknown[]): unknown[] =>
  [...values].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

// CDK's built-in CloudFormation rule check runs in the cdk-nag test; here it would only slow synthesis.
beforeAll(() => {
  vi.stubEnv("CDK_VALIDATION", "false");
});

let built: BuiltStack;
let resources: Record<string, Resource>;
beforeAll(() => {
  built = buildStack();
  resources = built.template.toJSON().Resources as Record<string, Resource>;
});

function logicalIdOf(value: unknown): string {
  const ref = resolved(built.stack, value) as { Ref?: string; "Fn::GetAtt"?: [string, string] };
  return ref.Ref ?? (ref["Fn::GetAtt"] as [string, string])[0];
}

function resource(logicalId: string): Resource {
  const found = resources[logicalId];
  if (!found) throw new Error(`no resource ${logicalId}`);
  return found;
}

/** The one resource of a type. */
function onlyOfType(type: string): Resource {
  const found = ofType(type);
  expect(found, type).toHaveLength(1);
  return (found[0] as [string, Resource])[1];
}

function ofType(type: string): [string, Resource][] {
  return Object.entries(resources).filter(([, resource]) => resource.Type === type);
}

/** The statements of every identity policy in the template, with the role each belongs to. */
function identityStatements(): { roles: string[]; statement: Statement }[] {
  return ofType("AWS::IAM::Policy").flatMap(([, policy]) =>
    (policy.Properties.PolicyDocument as { Statement: Statement[] }).Statement.map((statement) => ({
      roles: (policy.Properties.Roles as { Ref: string }[]).map((role) => role.Ref),
      statement,
    })),
  );
}

function statementsOfRole(roleLogicalId: string): Statement[] {
  return identityStatements()
    .filter(({ roles }) => roles.includes(roleLogicalId))
    .map(({ statement }) => statement);
}

function stepFunction(handler: string) {
  const step = backupSteps.find((candidate) => candidate.handler === handler);
  if (!step) throw new Error(`no step ${handler}`);
  const construct = built.stack.backup.functions[step.placeholder];
  if (!construct) throw new Error(`no function for ${step.placeholder}`);
  return construct;
}

describe("snapshot storage", () => {
  it("encrypts the bucket with its own rotating KMS key, bucket key on", () => {
    const keyId = logicalIdOf(built.stack.storage.key.keyArn);
    expect(resource(keyId).Properties.EnableKeyRotation).toBe(true);
    built.template.hasResourceProperties("AWS::S3::Bucket", {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          {
            ServerSideEncryptionByDefault: {
              SSEAlgorithm: "aws:kms",
              KMSMasterKeyID: { "Fn::GetAtt": [keyId, "Arn"] },
            },
            BucketKeyEnabled: true,
          },
        ],
      },
    });
  });

  it("versions the bucket, blocks public access and keeps it on stack deletion", () => {
    const bucket = resource(logicalIdOf(built.stack.storage.bucket.bucketName));
    expect(bucket.Properties.VersioningConfiguration).toEqual({ Status: "Enabled" });
    expect(bucket.Properties.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(bucket.DeletionPolicy).toBe("Retain");
  });

  it("expires noncurrent versions and aborts incomplete multipart uploads after a day", () => {
    const bucket = resource(logicalIdOf(built.stack.storage.bucket.bucketName));
    const rules = (bucket.Properties.LifecycleConfiguration as { Rules: Record<string, unknown>[] }).Rules;
    expect(rules).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 30 }, Status: "Enabled" }),
        expect.objectContaining({
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
          Status: "Enabled",
        }),
      ]),
    );
    expect(bucket.Properties.ObjectLockEnabled).toBeUndefined();
  });

  it("logs server access to a separate bucket", () => {
    const bucket = resource(logicalIdOf(built.stack.storage.bucket.bucketName));
    expect(bucket.Properties.LoggingConfiguration).toEqual({
      DestinationBucketName: { Ref: logicalIdOf(built.stack.storage.accessLogBucket.bucketName) },
      LogFilePrefix: "snapshots/",
    });
  });

  it("refuses any request without TLS on both buckets", () => {
    for (const bucket of [built.stack.storage.bucket, built.stack.storage.accessLogBucket]) {
      built.template.hasResourceProperties("AWS::S3::BucketPolicy", {
        Bucket: { Ref: logicalIdOf(bucket.bucketName) },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: "Deny",
              Principal: { AWS: "*" },
              Action: "s3:*",
              Condition: { Bool: { "aws:SecureTransport": "false" } },
            }),
          ]),
        },
      });
    }
  });

  it("turns Object Lock on with a default retention when asked", () => {
    const { template } = buildStack({
      objectLock: { mode: "COMPLIANCE", days: 14 },
      noncurrentVersionDays: 60,
    });
    template.hasResourceProperties("AWS::S3::Bucket", {
      ObjectLockEnabled: true,
      ObjectLockConfiguration: {
        ObjectLockEnabled: "Enabled",
        Rule: { DefaultRetention: { Mode: "COMPLIANCE", Days: 14 } },
      },
      LifecycleConfiguration: {
        Rules: Match.arrayWith([Match.objectLike({ NoncurrentVersionExpiration: { NoncurrentDays: 60 } })]),
      },
    });
  });
});

describe("snapshot replication", () => {
  const replica = {
    bucketArn: "arn:aws:s3:::etcd-snapshots-replica",
    kmsKeyArn: "arn:aws:kms:eu-central-1:210987654321:key/0123abcd-0123-abcd-0123-0123456789ab",
    account: "210987654321",
  };

  it("is off unless a replica is given", () => {
    expect(JSON.stringify(built.template.findResources("AWS::S3::Bucket"))).not.toContain("Replication");
    expect(built.stack.monitoring.replicationAlarm).toBeUndefined();
    expect(built.template.findOutputs(StackOutputs.replicationRoleArn)).toEqual({});
  });

  it("copies every object under the prefix into the replica, re-encrypted with its key, deletes not copied", () => {
    const { stack, template } = buildStack({ replica, objectLock: { mode: "GOVERNANCE", days: 7 } });
    const prefix = testTargets().prefix;
    template.hasResourceProperties("AWS::S3::Bucket", {
      ReplicationConfiguration: {
        Role: resolved(stack, stack.storage.replicationRole?.roleArn),
        Rules: [
          {
            Id: "snapshots-to-replica",
            Status: "Enabled",
            Filter: { Prefix: `${prefix}/` },
            Destination: {
              Account: replica.account,
              Bucket: replica.bucketArn,
              EncryptionConfiguration: { ReplicaKmsKeyID: replica.kmsKeyArn },
              Metrics: { Status: "Enabled" },
            },
            SourceSelectionCriteria: { SseKmsEncryptedObjects: { Status: "Enabled" } },
            DeleteMarkerReplication: { Status: "Disabled" },
          },
        ],
      },
    });
    template.hasOutput(StackOutputs.replicationRoleArn, {
      Value: resolved(stack, stack.storage.replicationRole?.roleArn),
    });
  });

  it("lets S3 read versions under the prefix and write them to the replica, and nothing else", () => {
    const { stack, template } = buildStack({ replica, objectLock: { mode: "GOVERNANCE", days: 7 } });
    const role = stack.storage.replicationRole;
    expect(role).toBeDefined();
    const policies = Object.values(template.findResources("AWS::IAM::Policy")).filter((policy) =>
      JSON.stringify(policy.Properties.Roles).includes(JSON.stringify(resolved(stack, role?.roleName))),
    );
    expect(policies).toHaveLength(1);
    const statements = (policies[0]?.Properties.PolicyDocument.Statement ?? []) as Statement[];
    const bucketArn = resolved(stack, stack.storage.bucket.bucketArn);
    const keyArn = resolved(stack, stack.storage.key.keyArn);
    const prefix = testTargets().prefix;
    expect(statements.map(({ Action, Resource }) => ({ Action: asList(Action).sort(), Resource }))).toEqual([
      { Action: ["s3:GetReplicationConfiguration", "s3:ListBucket"], Resource: bucketArn },
      {
        Action: [
          "s3:GetObjectLegalHold",
          "s3:GetObjectRetention",
          "s3:GetObjectVersionAcl",
          "s3:GetObjectVersionForReplication",
          "s3:GetObjectVersionTagging",
        ],
        Resource: { "Fn::Join": ["", [bucketArn, `/${prefix}/*`]] },
      },
      {
        Action: ["s3:ReplicateDelete", "s3:ReplicateObject", "s3:ReplicateTags"],
        Resource: `${replica.bucketArn}/${prefix}/*`,
      },
      { Action: ["kms:Decrypt"], Resource: keyArn },
      { Action: ["kms:Encrypt", "kms:GenerateDataKey"], Resource: replica.kmsKeyArn },
    ]);
    // A role of its own, not CDK's fixed CDKReplicationRole name, which a second stack would collide with.
    expect(JSON.stringify(template.findResources("AWS::IAM::Role"))).not.toContain("CDKReplicationRole");
  });

  it("tells on-call when S3 fails to replicate an object", () => {
    const { stack, template } = buildStack({ replica });
    template.hasResourceProperties("AWS::CloudWatch::Alarm", {
      AlarmName: "EtcdBackup-replication-failed",
      Namespace: "AWS/S3",
      MetricName: "OperationsFailedReplication",
      Dimensions: [
        { Name: "DestinationBucket", Value: "etcd-snapshots-replica" },
        { Name: "RuleId", Value: "snapshots-to-replica" },
        { Name: "SourceBucket", Value: resolved(stack, stack.storage.bucket.bucketName) },
      ],
      Statistic: "Sum",
      Period: 3600,
      Threshold: 0,
      ComparisonOperator: "GreaterThanThreshold",
      TreatMissingData: "notBreaching",
      AlarmActions: [resolved(stack, stack.onCall.topic.topicArn)],
      OKActions: [resolved(stack, stack.onCall.topic.topicArn)],
    });
  });
});

describe("catalogue table", () => {
  it("has the key schema and sparse verified index of CatalogueTable", () => {
    const index = CatalogueTable.verifiedByClusterIndex;
    built.template.hasResourceProperties("AWS::DynamoDB::Table", {
      KeySchema: [
        { AttributeName: CatalogueTable.partitionKey.name, KeyType: "HASH" },
        { AttributeName: CatalogueTable.sortKey.name, KeyType: "RANGE" },
      ],
      AttributeDefinitions: Match.arrayEquals([
        { AttributeName: CatalogueTable.partitionKey.name, AttributeType: CatalogueTable.partitionKey.type },
        { AttributeName: CatalogueTable.sortKey.name, AttributeType: CatalogueTable.sortKey.type },
        { AttributeName: index.partitionKey.name, AttributeType: index.partitionKey.type },
        { AttributeName: index.sortKey.name, AttributeType: index.sortKey.type },
      ]),
      GlobalSecondaryIndexes: [
        {
          IndexName: index.indexName,
          KeySchema: [
            { AttributeName: index.partitionKey.name, KeyType: "HASH" },
            { AttributeName: index.sortKey.name, KeyType: "RANGE" },
          ],
          Projection: { ProjectionType: index.projection },
        },
      ],
    });
  });

  it("is on demand, with point-in-time recovery, TTL, deletion protection and retention", () => {
    const table = onlyOfType("AWS::DynamoDB::Table");
    expect(table.Properties).toMatchObject({
      BillingMode: "PAY_PER_REQUEST",
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: CatalogueTable.timeToLiveAttribute, Enabled: true },
      DeletionProtectionEnabled: true,
    });
    expect(table.DeletionPolicy).toBe("Retain");
  });
});

describe("targets parameter", () => {
  it("holds the validated targets file as the handlers will parse it", () => {
    const parameter = resource(logicalIdOf(built.stack.targetsParameter.parameter.parameterName));
    expect(parameter.Properties.Tier).toBe("Standard");
    const value = JSON.parse(parameter.Properties.Value as string);
    expect(parseTargetsFile(value)).toEqual(testTargets());
  });

  it("moves to the Advanced tier over 4 KB and refuses more than 8 KB", () => {
    const many = (count: number) =>
      parseTargetsFile({
        targets: Array.from({ length: count }, (_, index) => ({
          name: `cluster-${index}`,
          schedule: "rate(1 hour)",
          etcd: { endpoints: [`https://10.0.${index}.10:2379`] },
        })),
      });
    const { template } = buildStack({ targets: many(20) });
    template.hasResourceProperties("AWS::SSM::Parameter", { Tier: "Advanced" });
    expect(() => buildStack({ targets: many(40) })).toThrow(/at most 8192/);
  });
});

describe("Lambda functions", () => {
  it("creates one function per state-machine step", () => {
    expect(ofType("AWS::Lambda::Function")).toHaveLength(backupSteps.length + restoreSteps.length);
    expect(backupSteps.map((step) => step.handler).sort()).toEqual(
      [
        "acquire-lease",
        "mark-failed",
        "prune-snapshots",
        "release-lease",
        "resolve-target",
        "take-snapshot",
        "verify-snapshot",
      ].sort(),
    );
  });

  it.each([
    ["acquire-lease", 256, 30, undefined],
    ["resolve-target", 256, 60, undefined],
    ["take-snapshot", 1024, 870, undefined],
    ["verify-snapshot", 1024, 870, 10240],
    ["prune-snapshots", 256, 60, undefined],
    ["release-lease", 256, 30, undefined],
    ["mark-failed", 256, 60, undefined],
  ])(
    "runs %s on arm64 Node 22 with %i MB, %i s, ephemeral %s MB, X-Ray and its own log group",
    (handler, memory, timeout, ephemeral) => {
      const fn = resource(logicalIdOf(stepFunction(handler).function.functionArn));
      expect(fn.Properties).toMatchObject({
        Runtime: "nodejs22.x",
        Architectures: ["arm64"],
        Handler: "index.handler",
        MemorySize: memory,
        Timeout: timeout,
        TracingConfig: { Mode: "Active" },
        LoggingConfig: {
          LogFormat: "JSON",
          LogGroup: { Ref: logicalIdOf(stepFunction(handler).logGroup.logGroupName) },
        },
      });
      expect(fn.Properties.EphemeralStorage).toEqual(
        ephemeral === undefined ? undefined : { Size: ephemeral },
      );
      expect(fn.Properties.VpcConfig).toBeUndefined();
    },
  );

  it.each([
    ["backup", backupSteps],
    ["restore", restoreSteps],
  ] as const)(
    "ends each Lambda at least 30 s before its state's TimeoutSeconds in %s.asl.json",
    (workflow, steps) => {
      type State = {
        Parameters?: { FunctionName?: string };
        TimeoutSeconds?: number;
        TimeoutSecondsPath?: string;
        ItemProcessor?: { States: Record<string, State> };
      };
      const definition = JSON.parse(
        readFileSync(join(projectRoot, "statemachine", `${workflow}.asl.json`), "utf8"),
      ) as { States: Record<string, State> };
      const lambdaStates = (states: Record<string, State>): [string, State][] =>
        Object.entries(states).flatMap(([name, state]) => [
          // A wait for a task token (the approval) is bounded by its own, much longer, timeout.
          ...(state.Parameters?.FunctionName && !state.TimeoutSecondsPath
            ? [[name, state] as [string, State]]
            : []),
          ...lambdaStates(state.ItemProcessor?.States ?? {}),
        ]);
      const checked = lambdaStates(definition.States);
      expect(checked.length).toBeGreaterThan(5);
      for (const [name, state] of checked) {
        const placeholder = /^\$\{(\w+)\}$/.exec(state.Parameters?.FunctionName ?? "")?.[1];
        const step = steps.find((candidate) => candidate.placeholder === placeholder);
        expect(step, name).toBeDefined();
        // Step Functions' clock starts before the function runs: the function must fail first.
        expect(state.TimeoutSeconds, name).toBeGreaterThanOrEqual(
          (step?.sizing.timeout.toSeconds() ?? 0) + 30,
        );
      }
    },
  );

  it("gives every function the environment the handlers read", () => {
    const { stack } = built;
    for (const step of backupSteps) {
      const fn = resource(logicalIdOf(stepFunction(step.handler).function.functionArn));
      expect((fn.Properties.Environment as { Variables: unknown }).Variables).toEqual({
        CATALOGUE_TABLE: { Ref: logicalIdOf(stack.catalogue.table.tableName) },
        SNAPSHOT_BUCKET: { Ref: logicalIdOf(stack.storage.bucket.bucketName) },
        SNAPSHOT_PREFIX: "backups/etcd",
        SNAPSHOT_KMS_KEY_ID: { "Fn::GetAtt": [logicalIdOf(stack.storage.key.keyArn), "Arn"] },
        TARGETS_PARAMETER_NAME: { Ref: logicalIdOf(stack.targetsParameter.parameter.parameterName) },
        POWERTOOLS_SERVICE_NAME: "etcd-backup",
        POWERTOOLS_METRICS_NAMESPACE: "EtcdBackup",
      });
    }
  });

  it("keeps the logs of every function and of the state machine for the configured retention", () => {
    const groups = ofType("AWS::Logs::LogGroup");
    // One per function, one per state machine (backup and restore).
    expect(groups).toHaveLength(backupSteps.length + restoreSteps.length + 2);
    for (const [, group] of groups) expect(group.Properties.RetentionInDays).toBe(90);
    const { template } = buildStack({ logRetention: logs.RetentionDays.ONE_YEAR });
    template.allResourcesProperties("AWS::Logs::LogGroup", { RetentionInDays: 365 });
  });

  it("places only the steps that reach etcd or the Kubernetes API in the VPC, with a security group of their own, when one is given", () => {
    const { stack, template } = buildStack({
      vpc: {
        vpcId: "vpc-0123456789abcdef0",
        subnetIds: ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"],
      },
    });
    const json = template.toJSON() as {
      Resources: Record<string, Resource>;
      Outputs: Record<string, { Value: unknown }>;
    };
    const inVpc = Object.entries(json.Resources)
      .filter(([, candidate]) => candidate.Type === "AWS::Lambda::Function" && candidate.Properties.VpcConfig)
      .map(([logicalId, fn]) => [logicalId, fn.Properties.VpcConfig] as const);
    const logicalIdIn = (functions: Record<string, { function: lambda.IFunction }>, placeholder: string) =>
      (stack.resolve(functions[placeholder]?.function.functionArn) as { "Fn::GetAtt": [string] })[
        "Fn::GetAtt"
      ][0];
    const expected = [
      ...["resolve-target", "take-snapshot", "verify-snapshot"].map((handler) =>
        logicalIdIn(
          stack.backup.functions,
          backupSteps.find((candidate) => candidate.handler === handler)?.placeholder ?? "",
        ),
      ),
      // And the pod executor's, which reach the Kubernetes API (a private endpoint, like etcd's).
      ...["validate-restore", "check-etcd-health", "start-agent-pods", "remove-agent-pods"].map((handler) =>
        logicalIdIn(
          stack.restore.functions,
          restoreSteps.find((candidate) => candidate.handler === handler)?.placeholder ?? "",
        ),
      ),
    ];
    expect(inVpc.map(([logicalId]) => logicalId).sort()).toEqual(expected.sort());
    const [[groupId] = []] = Object.entries(json.Resources).filter(
      ([, candidate]) => candidate.Type === "AWS::EC2::SecurityGroup",
    );
    for (const [, config] of inVpc) {
      expect(config).toEqual({
        SubnetIds: ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"],
        SecurityGroupIds: [{ "Fn::GetAtt": [groupId, "GroupId"] }],
      });
    }
    expect(json.Outputs[StackOutputs.clusterAccessSecurityGroupId]?.Value).toEqual({
      "Fn::GetAtt": [groupId, "GroupId"],
    });
    expect(Annotations.fromStack(stack).findWarning("*", Match.anyValue())).toEqual([]);
  });

  it("uses the given security groups instead, creating none", () => {
    const { template } = buildStack({
      vpc: {
        vpcId: "vpc-0123456789abcdef0",
        subnetIds: ["subnet-0aaaaaaaaaaaaaaaa"],
        securityGroupIds: ["sg-0ccccccccccccccccc"],
      },
    });
    template.resourceCountIs("AWS::EC2::SecurityGroup", 0);
    template.hasResourceProperties("AWS::Lambda::Function", {
      VpcConfig: { SubnetIds: ["subnet-0aaaaaaaaaaaaaaaa"], SecurityGroupIds: ["sg-0ccccccccccccccccc"] },
    });
    expect(template.toJSON().Outputs[StackOutputs.clusterAccessSecurityGroupId]).toBeUndefined();
  });
});

describe("backup state machine", () => {
  it("is deployed from statemachine/backup.asl.json, unchanged", () => {
    const machine = resource(logicalIdOf(built.stack.backup.stateMachine.stateMachineArn));
    const location = machine.Properties.DefinitionS3Location as { Key: string };
    const assembly = built.app.synth();
    const staged = readFileSync(join(assembly.directory, `asset.${location.Key}`), "utf8");
    expect(staged).toBe(readFileSync(join(projectRoot, "statemachine", "backup.asl.json"), "utf8"));
    expect(machine.Properties.DefinitionString).toBeUndefined();
  });

  it("fills every placeholder of the file: each step with its function's ARN, the topic with its ARN", () => {
    const machine = resource(logicalIdOf(built.stack.backup.stateMachine.stateMachineArn));
    const substitutions = machine.Properties.DefinitionSubstitutions as Record<string, unknown>;
    const definition = readFileSync(join(projectRoot, "statemachine", "backup.asl.json"), "utf8");
    expect(Object.keys(substitutions).sort()).toEqual(placeholdersIn(definition));
    for (const step of backupSteps) {
      expect(substitutions[step.placeholder]).toEqual(
        resolved(built.stack, stepFunction(step.handler).function.functionArn),
      );
    }
    expect(substitutions.OnCallTopicArn).toEqual({ Ref: logicalIdOf(built.stack.onCall.topic.topicArn) });
  });

  it("logs every execution and traces with X-Ray", () => {
    const machine = resource(logicalIdOf(built.stack.backup.stateMachine.stateMachineArn));
    expect(machine.Properties).toMatchObject({
      StateMachineType: "STANDARD",
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: { Level: "ALL", IncludeExecutionData: true },
    });
  });

  it("may invoke exactly the seven step functions and publish only to the on-call topic", () => {
    const machine = resource(logicalIdOf(built.stack.backup.stateMachine.stateMachineArn));
    const roleId = (machine.Properties.RoleArn as { "Fn::GetAtt": [string] })["Fn::GetAtt"][0];
    const statements = statementsOfRole(roleId);
    const invoke = statements.filter((statement) =>
      asList(statement.Action).includes("lambda:InvokeFunction"),
    );
    expect(invoke).toHaveLength(1);
    expect(asSet(asList(invoke[0]?.Resource))).toEqual(
      asSet(
        backupSteps.map((step) => resolved(built.stack, stepFunction(step.handler).function.functionArn)),
      ),
    );
    const publish = statements.filter((statement) =>
      asList(statement.Action).some((action) => action.startsWith("sns:")),
    );
    expect(publish).toEqual([
      {
        Effect: "Allow",
        Action: "sns:Publish",
        Resource: { Ref: logicalIdOf(built.stack.onCall.topic.topicArn) },
      },
    ]);
  });

  it("refuses a definition whose placeholders and substitutions differ", () => {
    const directory = mkdtempSync(join(tmpdir(), "asl-"));
    const file = join(directory, "broken.asl.json");
    writeFileSync(
      file,
      JSON.stringify({
        StartAt: "A",
        States: { A: { Type: "Task", Resource: aslPlaceholder("Missing"), End: true } },
      }),
    );
    const stack = new Stack(new App(), "Broken");
    expect(
      () =>
        new AslStateMachine(stack, "Machine", {
          definitionFile: file,
          functions: {},
          values: { Extra: "x" },
          logRetention: logs.RetentionDays.ONE_DAY,
        }),
    ).toThrow(/missing: Missing; not in the file: Extra/);
  });
});

describe("schedules", () => {
  it("starts the state machine once per target with { cluster, scheduledTime }, flexible window off", () => {
    const schedules = ofType("AWS::Scheduler::Schedule");
    const targets = testTargets().targets;
    expect(schedules).toHaveLength(targets.length);
    const machineId = logicalIdOf(built.stack.backup.stateMachine.stateMachineArn);
    for (const target of targets) {
      const schedule = schedules.find(([, resource]) => {
        const input = JSON.parse((resource.Properties.Target as { Input: string }).Input) as {
          cluster: string;
        };
        return input.cluster === target.name;
      })?.[1];
      if (!schedule) throw new Error(`no schedule for ${target.name}`);
      expect(schedule.Properties).toMatchObject({
        ScheduleExpression: target.schedule,
        FlexibleTimeWindow: { Mode: "OFF" },
        State: "ENABLED",
        Target: { Arn: { Ref: machineId } },
      });
      const input = JSON.parse((schedule.Properties.Target as { Input: string }).Input);
      expect(input).toEqual({ cluster: target.name, scheduledTime: "<aws.scheduler.scheduled-time>" });
    }
  });

  it("lets the scheduler role start this state machine and nothing else", () => {
    const [[, schedule] = []] = ofType("AWS::Scheduler::Schedule");
    if (!schedule) throw new Error("no schedule");
    const roleId = (
      (schedule.Properties.Target as { RoleArn: unknown }).RoleArn as { "Fn::GetAtt": [string] }
    )["Fn::GetAtt"][0];
    expect(statementsOfRole(roleId)).toEqual([
      {
        Effect: "Allow",
        Action: "states:StartExecution",
        Resource: { Ref: logicalIdOf(built.stack.backup.stateMachine.stateMachineArn) },
      },
    ]);
    expect(resource(roleId).Properties.AssumeRolePolicyDocument).toMatchObject({
      Statement: [
        {
          Principal: { Service: "scheduler.amazonaws.com" },
          Condition: { StringEquals: { "aws:SourceAccount": { Ref: "AWS::AccountId" } } },
        },
      ],
    });
  });
});

describe("alerts", () => {
  it("sends FAILED, TIMED_OUT and ABORTED executions of the backup and restore state machines to on-call", () => {
    const rule = onlyOfType("AWS::Events::Rule");
    expect(rule.Properties.EventPattern).toEqual({
      source: ["aws.states"],
      "detail-type": ["Step Functions Execution Status Change"],
      detail: {
        status: ["FAILED", "TIMED_OUT", "ABORTED"],
        stateMachineArn: [
          { Ref: logicalIdOf(built.stack.backup.stateMachine.stateMachineArn) },
          { Ref: logicalIdOf(built.stack.restore.stateMachine.stateMachineArn) },
        ],
      },
    });
    const [target] = rule.Properties.Targets as {
      Arn: unknown;
      RoleArn: unknown;
      InputTransformer: unknown;
    }[];
    expect(target?.Arn).toEqual({ Ref: logicalIdOf(built.stack.onCall.topic.topicArn) });
    expect(JSON.stringify(target?.InputTransformer)).toContain("<detail-executionArn>");
  });

  it("encrypts the on-call topic with a rotating key and refuses publishing without TLS", () => {
    const keyId = logicalIdOf(built.stack.onCall.key.keyArn);
    expect(resource(keyId).Properties.EnableKeyRotation).toBe(true);
    built.template.hasResourceProperties("AWS::SNS::Topic", {
      KmsMasterKeyId: { "Fn::GetAtt": [keyId, "Arn"] },
    });
    built.template.hasResourceProperties("AWS::SNS::TopicPolicy", {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: "Deny",
            Action: "sns:Publish",
            Condition: { Bool: { "aws:SecureTransport": "false" } },
          }),
        ]),
      },
    });
  });

  it("lets no other service or account publish through the topic policy than this account's alarms", () => {
    const onCallTopic = { Ref: logicalIdOf(built.stack.onCall.topic.topicArn) };
    const policy = ofType("AWS::SNS::TopicPolicy")
      .map(([, candidate]) => candidate)
      .find((candidate) => JSON.stringify(candidate.Properties.Topics) === JSON.stringify([onCallTopic]));
    if (!policy) throw new Error("no on-call topic policy");
    const allows = (
      policy.Properties.PolicyDocument as { Statement: (Statement & { Principal: unknown })[] }
    ).Statement.filter((statement) => statement.Effect === "Allow");
    expect(allows).toHaveLength(1);
    expect(allows[0]).toMatchObject({
      Principal: { Service: "cloudwatch.amazonaws.com" },
      Condition: { StringEquals: { "aws:SourceAccount": { Ref: "AWS::AccountId" } } },
    });
  });

  it("subscribes the given e-mail addresses", () => {
    const { template } = buildStack({ alertEmails: ["oncall@example.com", "sre@example.com"] });
    template.resourceCountIs("AWS::SNS::Subscription", 2);
    template.hasResourceProperties("AWS::SNS::Subscription", {
      Protocol: "email",
      Endpoint: "sre@example.com",
    });
  });

  it.each([
    ["prod-eu", 7200, 1],
    ["staging", 86400, 6],
    ["edge", 1800, 1],
    ["partner", 86400, 1],
  ])(
    "alarms when %s has no verified snapshot within twice its interval (%i s × %i)",
    (cluster, period, periods) => {
      const alarm = built.stack.monitoring.freshnessAlarms[cluster];
      expect(alarm).toBeDefined();
      const properties = resource(logicalIdOf(alarm?.alarmArn)).Properties;
      expect(properties).toMatchObject({
        Namespace: "EtcdBackup",
        MetricName: "SnapshotVerified",
        Statistic: "Sum",
        Period: period,
        EvaluationPeriods: periods,
        DatapointsToAlarm: periods,
        Threshold: 1,
        ComparisonOperator: "LessThanThreshold",
        TreatMissingData: "breaching",
        AlarmActions: [{ Ref: logicalIdOf(built.stack.onCall.topic.topicArn) }],
      });
      expect(properties?.Dimensions).toEqual(
        expect.arrayContaining([
          { Name: "Cluster", Value: cluster },
          { Name: "service", Value: "etcd-backup" },
        ]),
      );
    },
  );

  it("alarms when an etcd client certificate the product holds is within 30 days of expiry, for those targets only", () => {
    const alarms = built.stack.monitoring.certificateAlarms;
    const holding = testTargets()
      .targets.filter((target) => target.etcd.tlsSecretArn && target.etcd.source !== "exec")
      .map((target) => target.name);
    expect(holding.length).toBeGreaterThan(0);
    expect(Object.keys(alarms).sort()).toEqual([...holding].sort());
    for (const cluster of holding) {
      const properties = resource(logicalIdOf(alarms[cluster]?.alarmArn)).Properties;
      expect(properties).toMatchObject({
        Namespace: "EtcdBackup",
        MetricName: "ClientCertificateDaysLeft",
        Statistic: "Minimum",
        Threshold: 30,
        ComparisonOperator: "LessThanThreshold",
        EvaluationPeriods: 1,
        // Published at each backup: between backups the last verdict stands.
        TreatMissingData: "ignore",
        AlarmActions: [{ Ref: logicalIdOf(built.stack.onCall.topic.topicArn) }],
        OKActions: [{ Ref: logicalIdOf(built.stack.onCall.topic.topicArn) }],
      });
      expect(properties.Dimensions).toEqual(expect.arrayContaining([{ Name: "Cluster", Value: cluster }]));
    }
  });

  it("alarms for every target when a member's HashKV at a verified snapshot's revision differs from the snapshot's", () => {
    const alarms = built.stack.monitoring.divergenceAlarms;
    const clusters = testTargets().targets.map((target) => target.name);
    expect(Object.keys(alarms).sort()).toEqual([...clusters].sort());
    for (const cluster of clusters) {
      const properties = resource(logicalIdOf(alarms[cluster]?.alarmArn)).Properties;
      expect(properties).toMatchObject({
        Namespace: "EtcdBackup",
        MetricName: "MembersHashMismatched",
        Statistic: "Maximum",
        Threshold: 1,
        ComparisonOperator: "GreaterThanOrEqualToThreshold",
        EvaluationPeriods: 1,
        TreatMissingData: "ignore",
        AlarmActions: [{ Ref: logicalIdOf(built.stack.onCall.topic.topicArn) }],
      });
      expect(properties.Dimensions).toEqual(expect.arrayContaining([{ Name: "Cluster", Value: cluster }]));
    }
  });

  describe("schedules beyond a week", () => {
    let week: BuiltStack;
    let weekResources: Record<string, Resource>;
    beforeAll(() => {
      week = buildStack({
        targets: parseTargetsFile({
          targets: [
            {
              name: "every-five-days",
              schedule: "rate(5 days)",
              etcd: { endpoints: ["https://10.0.0.1:2379"] },
            },
            {
              name: "weekly",
              schedule: "cron(0 3 ? * SUN *)",
              etcd: { endpoints: ["https://10.0.0.2:2379"] },
            },
            {
              name: "monthly",
              schedule: "cron(0 3 L * ? *)",
              etcd: { endpoints: ["https://10.0.0.3:2379"] },
            },
            {
              name: "until-2030",
              schedule: "cron(0 3 * * ? 2027-2030)",
              etcd: { endpoints: ["https://10.0.0.4:2379"] },
            },
          ],
        }),
      });
      weekResources = week.template.toJSON().Resources as Record<string, Resource>;
    });
    const weekResource = (value: unknown) => {
      const ref = resolved(week.stack, value) as { Ref?: string; "Fn::GetAtt"?: [string, string] };
      return weekResources[ref.Ref ?? (ref["Fn::GetAtt"] as [string, string])[0]] as Resource;
    };

    it("caps the verified-count window at CloudWatch's 7 days", () => {
      expect(
        weekResource(week.stack.monitoring.freshnessAlarms["every-five-days"]?.alarmArn).Properties,
      ).toMatchObject({
        MetricName: "SnapshotVerified",
        Period: 86400,
        EvaluationPeriods: 7,
      });
    });

    it.each([
      ["weekly", 14 * 86400],
      ["monthly", 62 * 86400],
    ])(
      "alarms on the age of %s's newest verified snapshot beyond twice its interval (%i s)",
      (cluster, threshold) => {
        const alarm = week.stack.monitoring.freshnessAlarms[cluster];
        const properties = weekResource(alarm?.alarmArn).Properties;
        expect(properties).toMatchObject({
          Namespace: "EtcdBackup",
          MetricName: "NewestVerifiedSnapshotAge",
          Statistic: "Maximum",
          Period: 3600,
          EvaluationPeriods: 3,
          DatapointsToAlarm: 3,
          Threshold: threshold,
          ComparisonOperator: "GreaterThanThreshold",
          // No age at all: no verified snapshot, or the check stopped running.
          TreatMissingData: "breaching",
        });
        expect(properties.Dimensions).toEqual(
          expect.arrayContaining([
            { Name: "Cluster", Value: cluster },
            { Name: "service", Value: "etcd-backup" },
          ]),
        );
      },
    );

    it("runs the age check hourly for exactly those clusters, with their name as the input", () => {
      const check = week.stack.monitoring.ageCheck;
      expect(Object.keys(check?.schedules ?? {}).sort()).toEqual(["monthly", "weekly"]);
      const schedule = weekResource(check?.schedules.weekly?.scheduleArn).Properties as {
        ScheduleExpression: string;
        Target: { Arn: unknown; Input: string; RetryPolicy: unknown };
      };
      expect(schedule.ScheduleExpression).toBe("rate(1 hour)");
      expect(schedule.Target.Arn).toEqual(resolved(week.stack, check?.function.function.functionArn));
      expect(JSON.parse(schedule.Target.Input)).toEqual({ input: { cluster: "weekly" } });
      expect(schedule.Target.RetryPolicy).toEqual({
        MaximumEventAgeInSeconds: 3600,
        MaximumRetryAttempts: 3,
      });
    });

    it("lets the check query the verified index and nothing else: no writes, no snapshots, no clusters", () => {
      const check = week.stack.monitoring.ageCheck;
      const roleId = (resolved(week.stack, check?.function.role.roleArn) as { "Fn::GetAtt": [string] })[
        "Fn::GetAtt"
      ][0];
      const actions = Object.values(weekResources)
        .filter((candidate) => candidate.Type === "AWS::IAM::Policy")
        .filter((policy) =>
          (policy.Properties.Roles as { Ref: string }[]).some((role) => role.Ref === roleId),
        )
        .flatMap((policy) => (policy.Properties.PolicyDocument as { Statement: Statement[] }).Statement)
        .flatMap((statement) => asList(statement.Action));
      expect(actions.filter((action) => !/^(logs|xray):/.test(action))).toEqual(["dynamodb:Query"]);
    });

    it("warns, and creates no alarm, for a schedule that stops firing", () => {
      expect(week.stack.monitoring.freshnessAlarms["until-2030"]).toBeUndefined();
      // Three alarms on freshness, beside the divergence alarm every target has.
      const alarms = Object.values(
        Template.fromStack(week.stack).findResources("AWS::CloudWatch::Alarm") as Record<
          string,
          { Properties: { MetricName?: string } }
        >,
      );
      const divergence = alarms.filter((alarm) => alarm.Properties.MetricName === "MembersHashMismatched");
      expect(divergence).toHaveLength(Object.keys(week.stack.monitoring.divergenceAlarms).length);
      expect(divergence.length).toBeGreaterThan(0);
      expect(alarms.length - divergence.length).toBe(3);
      Annotations.fromStack(week.stack).hasWarning(
        "/EtcdBackup/Monitoring",
        Match.stringLikeRegexp("target until-2030: .* no freshness alarm is created"),
      );
    });
  });
});

describe("least privilege", () => {
  const serviceWideActions = new Set([
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    // validate-restore's free-space probe reads its command's answers (no resource-level permissions).
    "ssm:GetCommandInvocation",
  ]);

  it("grants no wildcard action, and Resource '*' only for the X-Ray, log-delivery and Run Command read APIs that require it", () => {
    const statements = identityStatements().map(({ statement }) => statement);
    expect(statements.length).toBeGreaterThan(20);
    for (const statement of statements) {
      for (const action of asList(statement.Action)) expect(action).not.toMatch(/\*/);
      if (asList(statement.Resource).includes("*")) {
        for (const action of asList(statement.Action)) expect(serviceWideActions, action).toContain(action);
      }
    }
  });

  it("restricts S3 object access to <prefix>/<cluster>/* of the named clusters", () => {
    const bucketId = logicalIdOf(built.stack.storage.bucket.bucketName);
    const allowed = testTargets().targets.map((target) => ({
      "Fn::Join": ["", [{ "Fn::GetAtt": [bucketId, "Arn"] }, `/backups/etcd/${target.name}/*`]],
    }));
    // The restore roles' narrower grants (*.db, _restores/*) are checked in restore-workflow.test.ts.
    const backupRoles = new Set(
      backupSteps.map((step) => logicalIdOf(stepFunction(step.handler).role.roleArn)),
    );
    const s3Statements = identityStatements()
      .filter(({ roles }) => roles.some((role) => backupRoles.has(role)))
      .map(({ statement }) => statement)
      .filter((statement) => asList(statement.Action).some((action) => action.startsWith("s3:")));
    expect(s3Statements.length).toBeGreaterThan(0);
    for (const statement of s3Statements) {
      const bucketLevel = asList(statement.Action).every(
        (action) => action === "s3:ListBucketMultipartUploads",
      );
      if (bucketLevel) {
        expect(statement.Resource).toEqual({ "Fn::GetAtt": [bucketId, "Arn"] });
      } else {
        expect(asSet(asList(statement.Resource))).toEqual(asSet(allowed));
      }
    }
  });

  it.each([
    ["acquire-lease", []],
    ["resolve-target", []],
    [
      "take-snapshot",
      [
        "s3:AbortMultipartUpload",
        "s3:DeleteObjectVersion",
        "s3:PutObject",
        "s3:PutObjectTagging",
        "s3:PutObjectVersionTagging",
      ],
    ],
    [
      "verify-snapshot",
      ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"],
    ],
    [
      "prune-snapshots",
      [
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:GetObject",
        "s3:GetObjectLegalHold",
        "s3:GetObjectRetention",
        "s3:GetObjectVersion",
      ],
    ],
    ["release-lease", []],
    ["mark-failed", ["s3:AbortMultipartUpload"]],
  ])("gives %s only the object actions its step performs", (handler, actions) => {
    const roleId = logicalIdOf(stepFunction(handler).role.roleArn);
    const objectActions = statementsOfRole(roleId)
      .flatMap((statement) => asList(statement.Action))
      .filter((action) => action.startsWith("s3:") && action !== "s3:ListBucketMultipartUploads")
      .sort();
    expect(objectActions).toEqual(actions);
  });

  it("limits catalogue access to the named clusters' partitions, on the table and its verified index", () => {
    const tableId = logicalIdOf(built.stack.catalogue.table.tableName);
    const names = testTargets().targets.map((target) => target.name);
    // The approvals partition (request-approval's one PutItem) is checked in restore-workflow.test.ts.
    const dynamo = identityStatements().filter(
      ({ statement }) =>
        asList(statement.Action).some((action) => action.startsWith("dynamodb:")) &&
        !JSON.stringify(statement.Condition).includes("#approvals"),
    );
    expect(dynamo).toHaveLength(
      [...backupSteps, ...restoreSteps].filter((step) => step.access.includes("catalogue")).length,
    );
    for (const { statement } of dynamo) {
      expect(statement.Condition).toEqual({ "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": names } });
      expect(asList(statement.Resource)).toEqual([
        { "Fn::GetAtt": [tableId, "Arn"] },
        {
          "Fn::Join": [
            "",
            [{ "Fn::GetAtt": [tableId, "Arn"] }, `/index/${CatalogueTable.verifiedByClusterIndex.indexName}`],
          ],
        },
      ]);
      expect(asList(statement.Action)).not.toContain("dynamodb:DeleteItem");
    }
  });

  it("uses the snapshot key only through S3", () => {
    const keyArn = { "Fn::GetAtt": [logicalIdOf(built.stack.storage.key.keyArn), "Arn"] };
    const keyStatements = identityStatements()
      .map(({ statement }) => statement)
      .filter((statement) => JSON.stringify(statement.Resource) === JSON.stringify(keyArn));
    // take-snapshot, verify-snapshot, and the restore steps that read or write plans (and PresignRole).
    expect(keyStatements.length).toBeGreaterThanOrEqual(2);
    for (const statement of keyStatements) {
      expect(statement.Condition?.StringEquals).toHaveProperty("kms:ViaService");
    }
    // Every statement naming the key, alone or in a list, and only S3 of the stack's region may use it.
    const s3InRegion = {
      "Fn::Join": ["", ["s3.", { Ref: "AWS::Region" }, ".", { Ref: "AWS::URLSuffix" }]],
    };
    const naming = identityStatements().filter(({ statement }) =>
      asList(statement.Resource).some((arn) => JSON.stringify(arn) === JSON.stringify(keyArn)),
    );
    for (const { roles, statement } of naming) {
      const where = `${roles.join(",")} ${JSON.stringify(statement.Action)}`;
      expect(statement.Effect, where).toBe("Allow");
      expect(statement.Resource, where).toEqual(keyArn);
      expect(statement.Condition, where).toEqual({ StringEquals: { "kms:ViaService": s3InRegion } });
      for (const action of asList(statement.Action)) {
        expect(["kms:Decrypt", "kms:GenerateDataKey"], where).toContain(action);
      }
    }
    // One statement per role that reads or writes encrypted objects, and one per PresignRole; no other.
    const usesKey = new Set<string>([
      "write-snapshots",
      "verify-snapshots",
      "write-restore-plans",
      "read-restore-plans",
    ]);
    const presignRoleIds = Object.values(built.stack.restore.functions).flatMap((fn) =>
      fn.presignRole ? [logicalIdOf(fn.presignRole.roleArn)] : [],
    );
    expect(presignRoleIds).toHaveLength(
      restoreSteps.filter((step) => step.access.includes("presign-urls")).length,
    );
    const expectedRoles = [
      ...backupSteps
        .filter((step) => step.access.some((kind) => usesKey.has(kind)))
        .map((step) => logicalIdOf(stepFunction(step.handler).role.roleArn)),
      ...restoreSteps
        .filter((step) => step.access.some((kind) => usesKey.has(kind)))
        .map((step) => logicalIdOf(built.stack.restore.functions[step.placeholder]?.role.roleArn)),
      ...presignRoleIds,
    ];
    // take-snapshot, verify-snapshot, write-restore-plans, set-restore-phase, check-restore-agents, 2 PresignRoles.
    expect(expectedRoles).toHaveLength(7);
    expect(naming.flatMap(({ roles }) => roles).sort()).toEqual([...expectedRoles].sort());
    expect(keyStatements).toHaveLength(naming.length);
  });

  it("lets only the cluster-facing steps read the named secrets, describe the named EKS clusters, assume the named roles", () => {
    const reaching = new Set(["resolve-target", "take-snapshot", "verify-snapshot"]);
    for (const step of backupSteps) {
      const statements = statementsOfRole(logicalIdOf(stepFunction(step.handler).role.roleArn));
      const find = (action: string) =>
        statements.find((statement) => asList(statement.Action).includes(action));
      // Every statement that grants the action, not just the first: one where a step reaches clusters.
      const granting = (action: string) =>
        statements.filter((statement) => asList(statement.Action).includes(action));
      const clusterActions = ["secretsmanager:GetSecretValue", "eks:DescribeCluster", "sts:AssumeRole"];
      for (const action of clusterActions) {
        expect(granting(action), `${step.handler} ${action}`).toHaveLength(
          reaching.has(step.handler) ? 1 : 0,
        );
        // Each of these grants stands alone: no other action rides on its statement.
        for (const statement of granting(action)) expect(statement.Action, step.handler).toBe(action);
      }
      // Nothing else of those services either (sts:AssumeRoleWithWebIdentity, secretsmanager:ListSecrets, …).
      expect(
        statements
          .flatMap((statement) => asList(statement.Action))
          .filter((action) => /^(secretsmanager|eks|sts):/.test(action))
          .sort(),
        step.handler,
      ).toEqual(reaching.has(step.handler) ? [...clusterActions].sort() : []);
      if (!reaching.has(step.handler)) {
        expect(find("secretsmanager:GetSecretValue"), step.handler).toBeUndefined();
        expect(find("eks:DescribeCluster"), step.handler).toBeUndefined();
        expect(find("sts:AssumeRole"), step.handler).toBeUndefined();
        continue;
      }
      expect(asList(find("secretsmanager:GetSecretValue")?.Resource).sort()).toEqual(
        [
          "arn:aws:secretsmanager:eu-west-1:111122223333:secret:edge-kubeconfig-AbCdEf",
          "arn:aws:secretsmanager:eu-west-1:111122223333:secret:edge-kubeconfig-AbCdEf-??????",
          "arn:aws:secretsmanager:eu-west-1:111122223333:secret:etcd-backup/prod-eu/etcd-client",
          "arn:aws:secretsmanager:eu-west-1:111122223333:secret:etcd-backup/prod-eu/etcd-client-??????",
        ].sort(),
      );
      expect(find("eks:DescribeCluster")?.Resource).toEqual({
        "Fn::Join": [
          "",
          [
            "arn:",
            { Ref: "AWS::Partition" },
            ":eks:eu-west-1:",
            { Ref: "AWS::AccountId" },
            ":cluster/staging",
          ],
        ],
      });
      expect(find("sts:AssumeRole")?.Resource).toBe("arn:aws:iam::444455556666:role/etcd-backup-reader");
    }
  });

  it("attaches no managed policy to any role", () => {
    for (const [, role] of ofType("AWS::IAM::Role"))
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
  });
});

describe("EKS access", () => {
  it("maps the cluster-facing roles into the named EKS cluster, to the etcd-backup group and no access policy", () => {
    const entries = ofType("AWS::EKS::AccessEntry").map(([, entry]) => entry);
    const roles = ["resolve-target", "take-snapshot", "verify-snapshot"].map(
      (handler) => stepFunction(handler).role.roleArn,
    );
    expect(asSet(entries.map((entry) => entry.Properties.PrincipalArn))).toEqual(
      asSet(roles.map((arn) => resolved(built.stack, arn))),
    );
    for (const entry of entries) {
      expect(entry.Properties).toEqual({
        ClusterName: "staging",
        PrincipalArn: expect.anything(),
        Type: "STANDARD",
        KubernetesGroups: ["etcd-backup"],
      });
      // The stack is environment-agnostic: the entry is created only in the cluster's region.
      const condition = (entry as Resource & { Condition: string }).Condition;
      expect(built.template.toJSON().Conditions[condition]).toEqual({
        "Fn::Equals": [{ Ref: "AWS::Region" }, "eu-west-1"],
      });
    }
  });

  it("creates no entry for a cluster reached through an assumed role, in another region, or when turned off", () => {
    const inUsEast1 = buildStack({ env: { account: "111122223333", region: "us-east-1" } });
    inUsEast1.template.resourceCountIs("AWS::EKS::AccessEntry", 0);
    Annotations.fromStack(inUsEast1.stack).hasWarning(
      "/EtcdBackup/BackupWorkflow/EksAccess",
      Match.stringLikeRegexp("eu-west-1/staging is not in this stack's region"),
    );
    buildStack({ eksAccessEntries: false }).template.resourceCountIs("AWS::EKS::AccessEntry", 0);
  });

  it("maps the pod executor's two restore roles, and only them, to the restore's own group", () => {
    const base = testTargets();
    const withPods = buildStack({
      targets: parseTargetsFile({
        ...base,
        targets: [
          ...base.targets,
          {
            name: "eks-pods",
            schedule: "rate(1 hour)",
            access: { kind: "eks", clusterName: "pods", region: "eu-west-1" },
            restore: {
              executor: "pod",
              toolPath: "/usr/local/bin/etcdutl",
              members: [
                {
                  name: "cp-1",
                  nodeName: "ip-10-0-0-1",
                  clientUrl: "https://10.0.0.1:2379",
                  peerUrl: "https://10.0.0.1:2380",
                },
              ],
            },
          },
        ],
      }),
    });
    const entries = Object.values(withPods.template.findResources("AWS::EKS::AccessEntry")) as Resource[];
    const restoreEntries = entries.filter((entry) =>
      (entry.Properties.KubernetesGroups as string[]).includes("etcd-backup-restore"),
    );
    const podRoles = ["start-agent-pods", "remove-agent-pods"].map((handler) =>
      resolved(
        withPods.stack,
        withPods.stack.restore.functions[
          restoreSteps.find((step) => step.handler === handler)?.placeholder ?? ""
        ]?.role.roleArn,
      ),
    );
    expect(asSet(restoreEntries.map((entry) => entry.Properties.PrincipalArn))).toEqual(asSet(podRoles));
    for (const entry of restoreEntries) {
      expect(entry.Properties).toMatchObject({
        ClusterName: "pods",
        KubernetesGroups: ["etcd-backup-restore"],
      });
    }
    // The backup's roles keep their own group, and the restore roles have no other.
    for (const entry of entries.filter((candidate) => !restoreEntries.includes(candidate))) {
      expect(entry.Properties.KubernetesGroups).toEqual(["etcd-backup"]);
      expect(podRoles).not.toContainEqual(entry.Properties.PrincipalArn);
    }
  });
});

describe("outputs", () => {
  it("exports the names the CLI looks up", () => {
    const { stack } = built;
    const outputs = built.template.toJSON().Outputs as Record<string, { Value: unknown }>;
    const optional: string[] = [StackOutputs.clusterAccessSecurityGroupId, StackOutputs.replicationRoleArn];
    const always = Object.values(StackOutputs).filter((name) => !optional.includes(name));
    expect(Object.keys(outputs).sort()).toEqual(always.sort());
    expect(outputs[StackOutputs.snapshotBucketName]?.Value).toEqual(
      resolved(stack, stack.storage.bucket.bucketName),
    );
    expect(outputs[StackOutputs.snapshotPrefix]?.Value).toBe("backups/etcd");
    // The roles to map where EKS access entries are off: the steps that call a Kubernetes API.
    const kubernetesRoles = ["resolve-target", "take-snapshot", "verify-snapshot"].map((handler) =>
      resolved(stack, stepFunction(handler).role.roleArn),
    );
    const agentPodRoles = ["start-agent-pods", "remove-agent-pods"].map((handler) => {
      const step = restoreSteps.find((candidate) => candidate.handler === handler);
      return resolved(stack, stack.restore.functions[step?.placeholder ?? ""]?.role.roleArn);
    });
    expect(outputs[StackOutputs.kubernetesRoleArns]?.Value).toEqual({
      "Fn::Join": [",", [...kubernetesRoles, ...agentPodRoles]],
    });
    expect(outputs[StackOutputs.catalogueTableName]?.Value).toEqual(
      resolved(stack, stack.catalogue.table.tableName),
    );
    expect(outputs[StackOutputs.backupStateMachineArn]?.Value).toEqual(
      resolved(stack, stack.backup.stateMachine.stateMachineArn),
    );
    expect(outputs[StackOutputs.onCallTopicArn]?.Value).toEqual(resolved(stack, stack.onCall.topic.topicArn));
    expect(outputs[StackOutputs.targetsParameterName]?.Value).toEqual(
      resolved(stack, stack.targetsParameter.parameter.parameterName),
    );
  });
});

describe("operator policies", () => {
  type PolicyStatementJson = Statement & { Condition?: Record<string, Record<string, unknown>> };
  const statementsOf = (policyArn: string) => {
    const policy = resource(logicalIdOf(policyArn));
    expect(policy.Type).toBe("AWS::IAM::ManagedPolicy");
    return (policy.Properties.PolicyDocument as { Statement: PolicyStatementJson[] }).Statement;
  };
  const clusters = () => testTargets().targets.map((target) => target.name);

  it("lets a catalogue reader read the stack's outputs and the named clusters' rows, and write nothing", () => {
    const statements = statementsOf(built.stack.operatorPolicies.catalogueReader.managedPolicyArn);
    const actions = statements.flatMap((statement) => asList(statement.Action)).sort();
    expect(actions).toEqual(["cloudformation:DescribeStacks", "dynamodb:GetItem", "dynamodb:Query"]);
    const rows = statements.find((statement) => asList(statement.Action).includes("dynamodb:Query"));
    expect(rows?.Condition).toEqual({
      "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": clusters() },
    });
    const describe = statements.find((statement) => statement.Action === "cloudformation:DescribeStacks");
    expect(describe?.Resource).toEqual({ Ref: "AWS::StackId" });
  });

  it("lets a restore operator start restores and on-demand backups, answer approvals, and read no snapshot nor any presigned URL", () => {
    const { stack } = built;
    const statements = statementsOf(stack.operatorPolicies.restoreOperator.managedPolicyArn);
    const byAction = (action: string) =>
      statements.filter((statement) => asList(statement.Action).includes(action));
    expect(byAction("states:StartExecution").map((statement) => statement.Resource)).toEqual([
      [
        resolved(stack, stack.backup.stateMachine.stateMachineArn),
        resolved(stack, stack.restore.stateMachine.stateMachineArn),
      ],
    ]);
    // A restore's history holds the agents' presigned URLs: only the backups' may be read.
    const history = byAction("states:GetExecutionHistory");
    expect(history).toHaveLength(1);
    expect(history[0]?.Resource).toEqual(resolved(stack, executionArnsOf(stack, stack.backup.stateMachine)));
    const approvals = byAction("dynamodb:DeleteItem");
    expect(approvals).toHaveLength(1);
    expect(approvals[0]?.Condition).toEqual({
      "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": ["#approvals"] },
    });
    const everything = statements.flatMap((statement) => asList(statement.Action));
    // Of the bucket, only the restore agents' status objects (`status` of a running restore): not the
    // snapshots, and not the plans beside the statuses, which carry presigned URLs.
    const restorable = testTargets()
      .targets.filter((target) => target.restore)
      .map((target) => target.name);
    expect(restorable.length).toBeGreaterThan(0);
    const prefix = testTargets().prefix;
    const bucketArn = resolved(stack, stack.storage.bucket.bucketArn);
    expect(byAction("s3:GetObject").map((statement) => asList(statement.Resource))).toEqual([
      restorable.map((cluster) =>
        resolved(stack, stack.storage.bucket.arnForObjects(`${prefix}/${cluster}/_restores/*/*/status.json`)),
      ),
    ]);
    expect(byAction("s3:ListBucket")).toEqual([
      expect.objectContaining({
        Resource: bucketArn,
        Condition: {
          StringLike: { "s3:prefix": restorable.map((cluster) => `${prefix}/${cluster}/_restores/*/`) },
        },
      }),
    ]);
    expect(everything.filter((action) => action.startsWith("s3:")).sort()).toEqual([
      "s3:GetObject",
      "s3:ListBucket",
    ]);
    const decrypt = byAction("kms:Decrypt");
    expect(decrypt).toHaveLength(1);
    expect(decrypt[0]?.Resource).toEqual(resolved(stack, stack.storage.key.keyArn));
    expect(everything.filter((action) => action.startsWith("kms:"))).toEqual(["kms:Decrypt"]);
    expect(everything).not.toContain("dynamodb:PutItem");
    expect(everything).not.toContain("dynamodb:UpdateItem");
    // The task-token actions allow no resource-level scoping: the token is what restricts them.
    expect(byAction("states:SendTaskSuccess")[0]?.Resource).toBe("*");
  });
});
