// The restore workflow as deployed: its own functions and roles, the approvers' topic, the state machine
// from statemachine/restore.asl.json with every placeholder filled, and grants no wider than each step's
// work. One stack, synthesized once, with an ssm target (the example's) and a local-executor target.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, PutCommand } from "@aws-sdk/lib-dynamodb";
import { Stack } from "aws-cdk-lib";
import { Match } from "aws-cdk-lib/assertions";
import * as iam from "aws-cdk-lib/aws-iam";
import { AssetManifestArtifact } from "aws-cdk-lib/cx-api";
import { mockClient } from "aws-sdk-client-mock";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { agentDocumentName } from "../../infra/agent-commands.js";
import { placeholdersIn } from "../../infra/asl-state-machine.js";
import { backupSteps } from "../../infra/backup-workflow.js";
import { agentPodClusterAccess, restoreSteps } from "../../infra/restore-workflow.js";
import { StackOutputs } from "../../infra/stack-outputs.js";
import { ApprovalTokens } from "../../lambdas/core/catalogue/approval-tokens.js";
import { approvalsPartition, CatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import {
  maxPhaseTimeoutSeconds,
  planUrlSeconds,
  stepAllowanceSeconds,
} from "../../lambdas/core/restore/agent-url-lifetimes.js";
import { freeSpaceDocumentContent } from "../../lambdas/core/restore/free-space-document.js";
import { RestorePhases } from "../../lambdas/core/restore/restore-plan.js";
import {
  agentExecutionTimeoutSeconds,
  restoreStateMachineTimeoutSeconds,
} from "../../lambdas/core/restore/restore-timeouts.js";
import { type BuiltStack, buildStack, projectRoot, resolved, testTargets } from "./stack-fixtures.js";

type Resource = { Type: string; Properties: Record<string, unknown> };
type Statement = {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, unknown>>;
};
const asList = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);
const sorted = (values: unknown[]): unknown[] =>
  [...values].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

/** The fixture targets, plus a restore layout run by the local executor on "edge". */
function restoreTargets() {
  const base = testTargets();
  return parseTargetsFile({
    ...base,
    targets: base.targets.map((target) =>
      target.name === "edge"
        ? {
            ...target,
            restore: {
              executor: "local",
              members: [
                {
                  name: "edge-1",
                  instanceId: "i-0ffffffffffffffff",
                  clientUrl: "https://10.9.0.1:2379",
                  peerUrl: "https://10.9.0.1:2380",
                },
              ],
            },
          }
        : target,
    ),
  });
}

beforeAll(() => {
  vi.stubEnv("CDK_VALIDATION", "false");
});

let built: BuiltStack;
let resources: Record<string, Resource>;
beforeAll(() => {
  built = buildStack({ targets: restoreTargets(), approverEmails: ["approver@example.com"] });
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
/** The statements of a role's policies, in this stack's template or another's. */
function statementsOfRole(
  roleLogicalId: string,
  template: Record<string, Resource> = resources,
): Statement[] {
  return Object.values(template)
    .filter((candidate) => candidate.Type === "AWS::IAM::Policy")
    .filter((policy) =>
      (policy.Properties.Roles as { Ref: string }[]).some((role) => role.Ref === roleLogicalId),
    )
    .flatMap((policy) => (policy.Properties.PolicyDocument as { Statement: Statement[] }).Statement);
}
/** A regional ARN as the template spells it (`account` empty for AWS-owned resources). */
const regionalArn = (service: string, account: unknown[], resourcePath: string) => ({
  "Fn::Join": [
    "",
    [
      "arn:",
      { Ref: "AWS::Partition" },
      `:${service}:`,
      { Ref: "AWS::Region" },
      ":",
      ...account,
      resourcePath,
    ],
  ],
});
/** The one document the agents' commands may run (an AWS-owned resource: no account in its ARN). */
/** The logical id of the stack's one SSM document (validate-restore's free-space probe). */
function documentIdOf(template: BuiltStack["template"]): string {
  const ids = Object.keys(template.findResources("AWS::SSM::Document"));
  expect(ids).toHaveLength(1);
  return ids[0] as string;
}

const agentDocumentArn = {
  "Fn::Join": [
    "",
    ["arn:", { Ref: "AWS::Partition" }, ":ssm:", { Ref: "AWS::Region" }, `::document/${agentDocumentName}`],
  ],
};
function restoreFunction(handler: string) {
  const step = restoreSteps.find((candidate) => candidate.handler === handler);
  const construct = built.stack.restore.functions[step?.placeholder ?? ""];
  if (!construct) throw new Error(`no restore function ${handler}`);
  return construct;
}
const roleOf = (handler: string) => logicalIdOf(restoreFunction(handler).role.roleArn);
const withAction = (statements: Statement[], prefix: string) =>
  statements.filter((statement) => asList(statement.Action).some((action) => action.startsWith(prefix)));
const restoreMachine = () => resource(logicalIdOf(built.stack.restore.stateMachine.stateMachineArn));
const restoreMachineRole = () =>
  (restoreMachine().Properties.RoleArn as { "Fn::GetAtt": [string] })["Fn::GetAtt"][0];
const bucketArn = () => ({ "Fn::GetAtt": [logicalIdOf(built.stack.storage.bucket.bucketName), "Arn"] });
const objects = (suffix: string) => ({ "Fn::Join": ["", [bucketArn(), `/backups/etcd/${suffix}`]] });
const allClusters = () => testTargets().targets.map((target) => target.name);

/** The bytes of the file asset the synthesized assembly stages for `bucket`/`key`; exactly one must match. */
function stagedFileAsset(bucket: string, key: string): Buffer {
  const assembly = built.app.synth();
  const manifests = assembly
    .getStackArtifact(built.stack.artifactId)
    .dependencies.filter((artifact) => artifact instanceof AssetManifestArtifact);
  expect(manifests).toHaveLength(1);
  const files = (
    JSON.parse(readFileSync((manifests[0] as AssetManifestArtifact).file, "utf8")) as {
      files: Record<
        string,
        {
          source: { path: string; packaging?: string };
          destinations: Record<string, { bucketName: string; objectKey: string }>;
        }
      >;
    }
  ).files;
  const matching = Object.values(files).filter((asset) =>
    Object.values(asset.destinations).some(
      (destination) => destination.bucketName === bucket && destination.objectKey === key,
    ),
  );
  expect(matching).toHaveLength(1);
  const asset = matching[0] as (typeof matching)[number];
  expect(asset.source.packaging ?? "file").toBe("file");
  return readFileSync(join(assembly.directory, asset.source.path));
}

describe("restore functions", () => {
  it("run every restore handler of restore.asl.json, each with a role of its own, apart from backup's", () => {
    const definition = readFileSync(join(projectRoot, "statemachine", "restore.asl.json"), "utf8");
    const functionPlaceholders = placeholdersIn(definition).filter((name) => name.endsWith("FunctionArn"));
    expect(restoreSteps.map((step) => step.placeholder).sort()).toEqual(functionPlaceholders);
    const backupRoles = backupSteps.map((step) =>
      logicalIdOf(built.stack.backup.functions[step.placeholder]?.role.roleArn),
    );
    const restoreRoles = restoreSteps.map((step) => roleOf(step.handler));
    expect(new Set(restoreRoles).size).toBe(restoreSteps.length);
    for (const role of restoreRoles) expect(backupRoles).not.toContain(role);
    for (const step of restoreSteps) {
      expect(
        resource(logicalIdOf(restoreFunction(step.handler).function.functionArn)).Properties,
      ).toMatchObject({ Runtime: "nodejs22.x", Architectures: ["arm64"], TracingConfig: { Mode: "Active" } });
    }
  });

  it("keeps each Lambda timeout within its state's TimeoutSeconds in restore.asl.json", () => {
    const states: { Parameters?: { FunctionName?: string }; TimeoutSeconds?: number }[] = [];
    const collect = (node: unknown) => {
      if (typeof node !== "object" || node === null) return;
      const record = node as Record<string, unknown>;
      if (record.States) for (const state of Object.values(record.States as object)) states.push(state);
      for (const value of Object.values(record)) collect(value);
    };
    collect(JSON.parse(readFileSync(join(projectRoot, "statemachine", "restore.asl.json"), "utf8")));
    let checked = 0;
    for (const state of states) {
      const placeholder = /^\$\{(\w+)\}$/.exec(state.Parameters?.FunctionName ?? "")?.[1];
      if (!placeholder || state.TimeoutSeconds === undefined) continue;
      const step = restoreSteps.find((candidate) => candidate.placeholder === placeholder);
      expect(step?.sizing.timeout.toSeconds(), placeholder).toBeLessThanOrEqual(state.TimeoutSeconds);
      checked += 1;
    }
    expect(checked).toBeGreaterThan(10);
  });

  it("gives each function the common environment, and only its own restore variables", () => {
    const { stack } = built;
    const common = {
      CATALOGUE_TABLE: { Ref: logicalIdOf(stack.catalogue.table.tableName) },
      SNAPSHOT_BUCKET: { Ref: logicalIdOf(stack.storage.bucket.bucketName) },
      SNAPSHOT_PREFIX: "backups/etcd",
      SNAPSHOT_KMS_KEY_ID: { "Fn::GetAtt": [logicalIdOf(stack.storage.key.keyArn), "Arn"] },
      TARGETS_PARAMETER_NAME: { Ref: logicalIdOf(stack.targetsParameter.parameter.parameterName) },
      POWERTOOLS_SERVICE_NAME: "etcd-backup",
      POWERTOOLS_METRICS_NAMESPACE: "EtcdBackup",
      // The stack keeps the CLI's default name: the commands quoted in notices need only the region.
      OPERATOR_CLI_FLAGS: { "Fn::Join": ["", ["--region ", { Ref: "AWS::Region" }]] },
    };
    const presignRoleArn = (handler: string) => ({
      "Fn::GetAtt": [logicalIdOf(restoreFunction(handler).presignRole?.roleArn), "Arn"],
    });
    const own: Record<string, Record<string, unknown>> = {
      "request-approval": {
        APPROVERS_TOPIC_ARN: { Ref: logicalIdOf(stack.restore.approvers.topic.topicArn) },
      },
      "write-restore-plans": {
        PRESIGN_ROLE_ARN: presignRoleArn("write-restore-plans"),
        RESTORE_AGENT_SCRIPT: "/var/task/etcd-restore-agent.sh",
      },
      "set-restore-phase": { PRESIGN_ROLE_ARN: presignRoleArn("set-restore-phase") },
      "start-agent-pods": { RESTORE_AGENT_SCRIPT: "/var/task/etcd-restore-agent.sh" },
      // This stack's targets restore through ssm: validate-restore probes their nodes' free space.
      "validate-restore": { FREE_SPACE_DOCUMENT: { Ref: documentIdOf(built.template) } },
    };
    for (const step of restoreSteps) {
      const fn = resource(logicalIdOf(restoreFunction(step.handler).function.functionArn));
      expect((fn.Properties.Environment as { Variables: unknown }).Variables, step.handler).toEqual({
        ...common,
        ...own[step.handler],
      });
    }
  });
});

describe("ssm members named by tag, or registered as managed instances (mi-…)", () => {
  /** The example's ssm target with cp-2 named by tag and cp-3 a hybrid node. */
  function taggedTargets() {
    const base = testTargets();
    return parseTargetsFile({
      ...base,
      targets: base.targets.map((target) =>
        target.name === "prod-eu" && target.restore
          ? {
              ...target,
              restore: {
                ...target.restore,
                members: target.restore.members.map((member) =>
                  member.name === "cp-2"
                    ? { ...member, instanceId: undefined, instanceTag: { key: "etcd-member", value: "cp-2" } }
                    : member.name === "cp-3"
                      ? { ...member, instanceId: "mi-0123456789abcdef0" }
                      : member,
                ),
              },
            }
          : target,
      ),
    });
  }

  it("lets the state machine reach a tagged node only through its tag, and a hybrid node by its ARN", () => {
    const tagged = buildStack({ targets: taggedTargets() });
    const machineRole = (
      tagged.stack.resolve(tagged.stack.restore.stateMachine.role.roleArn) as { "Fn::GetAtt": [string] }
    )["Fn::GetAtt"][0];
    const statements = statementsOfRole(
      machineRole,
      tagged.template.toJSON().Resources as Record<string, Resource>,
    ).filter((statement) => asList(statement.Action).includes("ssm:SendCommand"));
    expect(statements).toHaveLength(2);
    const account = [{ Ref: "AWS::AccountId" }];
    const [byName, byTag] = [
      statements.find((statement) => !statement.Condition),
      statements.find((statement) => statement.Condition),
    ];
    expect(sorted(asList(byName?.Resource))).toEqual(
      sorted([
        agentDocumentArn,
        regionalArn("ec2", account, ":instance/i-0a1b2c3d4e5f60001"),
        regionalArn("ssm", account, ":managed-instance/mi-0123456789abcdef0"),
      ]),
    );
    expect(sorted(asList(byTag?.Resource))).toEqual(
      sorted([
        regionalArn("ec2", account, ":instance/*"),
        regionalArn("ssm", account, ":managed-instance/mi-*"),
      ]),
    );
    expect(byTag?.Condition).toEqual({ StringEquals: { "ssm:resourceTag/etcd-member": ["cp-2"] } });
  });

  it("lets the state machine read its agents' Run Command invocations, after an abort, and only where agents run by ssm", () => {
    const readsInvocations = (built: BuiltStack) => {
      const role = (
        built.stack.resolve(built.stack.restore.stateMachine.role.roleArn) as { "Fn::GetAtt": [string] }
      )["Fn::GetAtt"][0];
      return statementsOfRole(role, built.template.toJSON().Resources as Record<string, Resource>).filter(
        (statement) => asList(statement.Action).includes("ssm:GetCommandInvocation"),
      );
    };
    const reads = readsInvocations(buildStack({ targets: taggedTargets() }));
    expect(reads).toHaveLength(1);
    expect(reads[0]).toMatchObject({ Effect: "Allow", Resource: "*" });
    // Without a member reached by Run Command, no read either.
    const withoutSsm = testTargets();
    withoutSsm.targets = withoutSsm.targets.map(({ restore: _restore, ...target }) => target);
    expect(readsInvocations(buildStack({ targets: withoutSsm }))).toEqual([]);
  });

  it("lets validate-restore probe free space with the stack's df-only document on the same nodes, and read the answers", () => {
    const tagged = buildStack({ targets: taggedTargets() });
    const step = restoreSteps.find((candidate) => candidate.handler === "validate-restore");
    const role = tagged.stack.resolve(
      tagged.stack.restore.functions[step?.placeholder ?? ""]?.role.roleArn,
    ) as {
      "Fn::GetAtt": [string];
    };
    const statements = statementsOfRole(
      role["Fn::GetAtt"][0],
      tagged.template.toJSON().Resources as Record<string, Resource>,
    );
    const sendCommand = statements.filter((statement) =>
      asList(statement.Action).includes("ssm:SendCommand"),
    );
    const account = [{ Ref: "AWS::AccountId" }];
    // The stack's df-only document, never AWS-RunShellScript: this function runs before approval.
    const resources = tagged.template.toJSON().Resources as Record<
      string,
      Resource & { Properties?: Record<string, unknown> }
    >;
    const documentId = documentIdOf(tagged.template);
    expect(resources[documentId]?.Properties).toEqual({
      DocumentType: "Command",
      Content: freeSpaceDocumentContent(),
    });
    const probeDocumentArn = {
      "Fn::Join": [
        "",
        [
          "arn:",
          { Ref: "AWS::Partition" },
          ":ssm:",
          { Ref: "AWS::Region" },
          ":",
          { Ref: "AWS::AccountId" },
          ":document/",
          { Ref: documentId },
        ],
      ],
    };
    expect(sorted(sendCommand.flatMap((statement) => asList(statement.Resource)))).toEqual(
      sorted([
        probeDocumentArn,
        regionalArn("ec2", account, ":instance/i-0a1b2c3d4e5f60001"),
        regionalArn("ssm", account, ":managed-instance/mi-0123456789abcdef0"),
        regionalArn("ec2", account, ":instance/*"),
        regionalArn("ssm", account, ":managed-instance/mi-*"),
      ]),
    );
    expect(sendCommand.find((statement) => statement.Condition)?.Condition).toEqual({
      StringEquals: { "ssm:resourceTag/etcd-member": ["cp-2"] },
    });
    for (const statement of sendCommand) expect(statement.Action).toBe("ssm:SendCommand");
    const readAnswers = statements.filter((statement) =>
      asList(statement.Action).includes("ssm:GetCommandInvocation"),
    );
    expect(readAnswers).toHaveLength(1);
    expect(readAnswers[0]).toMatchObject({ Effect: "Allow", Resource: "*" });
    const functionRef = tagged.stack.resolve(
      tagged.stack.restore.functions[step?.placeholder ?? ""]?.function.functionArn,
    ) as { "Fn::GetAtt": [string] };
    const environment = (
      resources[functionRef["Fn::GetAtt"][0]]?.Properties?.Environment as
        | { Variables?: Record<string, unknown> }
        | undefined
    )?.Variables;
    expect(environment?.FREE_SPACE_DOCUMENT).toEqual({ Ref: documentId });
  });

  it("lets no other restore function send commands or read their answers", () => {
    for (const step of restoreSteps.filter((candidate) => candidate.handler !== "validate-restore")) {
      const actions = statementsOfRole(roleOf(step.handler)).flatMap((statement) => asList(statement.Action));
      expect(actions, step.handler).not.toContain("ssm:SendCommand");
      expect(actions, step.handler).not.toContain("ssm:GetCommandInvocation");
    }
  });

  it("lets validate-restore list managed instances only when some member is named by tag", () => {
    const describeInstances = (stack: BuiltStack) => {
      const step = restoreSteps.find((candidate) => candidate.handler === "validate-restore");
      const role = stack.stack.resolve(
        stack.stack.restore.functions[step?.placeholder ?? ""]?.role.roleArn,
      ) as { "Fn::GetAtt": [string] };
      return statementsOfRole(
        role["Fn::GetAtt"][0],
        stack.template.toJSON().Resources as Record<string, Resource>,
      ).filter((statement) => asList(statement.Action).includes("ssm:DescribeInstanceInformation"));
    };
    // (CDK merges it with X-Ray's actions, which also take no resource.)
    const granted = describeInstances(buildStack({ targets: taggedTargets() }));
    expect(granted).toHaveLength(1);
    expect(granted[0]).toMatchObject({ Effect: "Allow", Resource: "*" });
    expect(granted[0]?.Condition).toBeUndefined();
    expect(describeInstances(built)).toEqual([]);
  });
});

describe("commands quoted in restore notices", () => {
  it("name a stack deployed under another name, so that approve and undo find its outputs", () => {
    const other = buildStack({ targets: restoreTargets() }, { stackName: "EtcdBackupStaging" });
    const functions = Object.values(
      other.template.findResources("AWS::Lambda::Function", {
        Properties: { Description: Match.stringLikeRegexp("^etcd-backup restore") },
      }),
    ) as Resource[];
    expect(functions).toHaveLength(restoreSteps.length);
    for (const fn of functions) {
      expect((fn.Properties.Environment as { Variables: Record<string, unknown> }).Variables).toMatchObject({
        OPERATOR_CLI_FLAGS: {
          "Fn::Join": ["", ["--stack EtcdBackupStaging --region ", { Ref: "AWS::Region" }]],
        },
      });
    }
  });
});

describe("restore state machine", () => {
  it("is deployed from statemachine/restore.asl.json, unchanged, logging every execution with X-Ray", () => {
    const machine = restoreMachine();
    expect(machine.Properties.DefinitionS3Location).toBeDefined();
    expect(machine.Properties.DefinitionString).toBeUndefined();
    // The object the state machine is created from is the file asset the cloud assembly stages for that
    // bucket and key, and that asset is the file as committed, byte for byte.
    const location = machine.Properties.DefinitionS3Location as {
      Bucket: { "Fn::Sub": string };
      Key: string;
    };
    const staged = stagedFileAsset(location.Bucket["Fn::Sub"], location.Key);
    const committed = readFileSync(join(projectRoot, "statemachine", "restore.asl.json"));
    expect(staged.toString("utf8")).toBe(committed.toString("utf8"));
    expect(staged.equals(committed)).toBe(true);
    expect(machine.Properties).toMatchObject({
      StateMachineType: "STANDARD",
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: { Level: "ALL", IncludeExecutionData: true },
    });
  });

  it("fills every placeholder: step functions, the on-call topic and the backup state machine", () => {
    const substitutions = restoreMachine().Properties.DefinitionSubstitutions as Record<string, unknown>;
    const definition = readFileSync(join(projectRoot, "statemachine", "restore.asl.json"), "utf8");
    expect(Object.keys(substitutions).sort()).toEqual(placeholdersIn(definition));
    for (const step of restoreSteps) {
      expect(substitutions[step.placeholder], step.placeholder).toEqual(
        resolved(built.stack, restoreFunction(step.handler).function.functionArn),
      );
    }
    expect(substitutions.OnCallTopicArn).toEqual({ Ref: logicalIdOf(built.stack.onCall.topic.topicArn) });
    expect(substitutions.BackupStateMachineArn).toEqual({
      Ref: logicalIdOf(built.stack.backup.stateMachine.stateMachineArn),
    });
  });

  it("lets Systems Manager run the agents as long as the execution can drive them, derived from its timeout", () => {
    const definition = JSON.parse(
      readFileSync(join(projectRoot, "statemachine", "restore.asl.json"), "utf8"),
    ) as {
      TimeoutSeconds: number;
      States: { StartAgents: { ItemProcessor: { States: Record<string, unknown> } } };
    };
    expect(definition.TimeoutSeconds).toBe(restoreStateMachineTimeoutSeconds);
    expect(definition.States.StartAgents.ItemProcessor.States.StartAgent).toMatchObject({
      // biome-ignore lint/suspicious/noTemplateCurlyInString: an ASL placeholder, which the CDK fills
      Parameters: { Parameters: { executionTimeout: ["${AgentExecutionTimeoutSeconds}"] } },
    });
    const substitutions = restoreMachine().Properties.DefinitionSubstitutions as Record<string, unknown>;
    const deployed = Number(substitutions.AgentExecutionTimeoutSeconds);
    expect(deployed).toBe(agentExecutionTimeoutSeconds);
    // Agents start once the restore is approved, which can be at once: the whole execution, and a margin,
    // as far as AWS-RunShellScript allows (48 h).
    expect(deployed).toBe(Math.min(definition.TimeoutSeconds + 3600, 172_800));
    // The barriers bound an agent's life well within it: every phase it can be given, each up to the
    // longest phase timeout and the steps around it, and the hour its last plan's URLs live.
    const phases = RestorePhases.filter((phase) => phase !== "abort").length;
    expect(phases * (maxPhaseTimeoutSeconds + stepAllowanceSeconds) + planUrlSeconds).toBeLessThan(deployed);
  });

  it("may invoke exactly the restore functions and publish only to on-call", () => {
    const statements = statementsOfRole(restoreMachineRole());
    const invoke = withAction(statements, "lambda:");
    expect(invoke).toHaveLength(1);
    expect(sorted(asList(invoke[0]?.Resource))).toEqual(
      sorted(
        restoreSteps.map((step) => resolved(built.stack, restoreFunction(step.handler).function.functionArn)),
      ),
    );
    expect(withAction(statements, "sns:")).toEqual([
      {
        Effect: "Allow",
        Action: "sns:Publish",
        Resource: { Ref: logicalIdOf(built.stack.onCall.topic.topicArn) },
      },
    ]);
  });

  it("may start the backup state machine and follow its executions the way .sync:2 needs", () => {
    const statements = statementsOfRole(restoreMachineRole());
    const backupArn = { Ref: logicalIdOf(built.stack.backup.stateMachine.stateMachineArn) };
    expect(withAction(statements, "states:")).toEqual([
      { Effect: "Allow", Action: "states:StartExecution", Resource: backupArn },
      {
        Effect: "Allow",
        Action: ["states:DescribeExecution", "states:StopExecution"],
        Resource: {
          "Fn::Join": [
            "",
            [
              "arn:",
              { Ref: "AWS::Partition" },
              ":states:",
              { Ref: "AWS::Region" },
              ":",
              { Ref: "AWS::AccountId" },
              ":execution:",
              { "Fn::Select": [6, { "Fn::Split": [":", backupArn] }] },
              ":*",
            ],
          ],
        },
      },
    ]);
    expect(withAction(statements, "events:")).toEqual([
      {
        Effect: "Allow",
        Action: ["events:DescribeRule", "events:PutRule", "events:PutTargets"],
        Resource: {
          "Fn::Join": [
            "",
            [
              "arn:",
              { Ref: "AWS::Partition" },
              ":events:",
              { Ref: "AWS::Region" },
              ":",
              { Ref: "AWS::AccountId" },
              ":rule/StepFunctionsGetEventsForStepFunctionsExecutionRule",
            ],
          ],
        },
      },
    ]);
  });

  it("may send only AWS-RunShellScript, only to the instances of ssm-executor members", () => {
    const sendCommand = withAction(statementsOfRole(restoreMachineRole()), "ssm:SendCommand");
    const instance = (id: string) => regionalArn("ec2", [{ Ref: "AWS::AccountId" }], `:instance/${id}`);
    expect(sendCommand).toHaveLength(1);
    expect(sendCommand[0]?.Action).toBe("ssm:SendCommand");
    expect(sorted(asList(sendCommand[0]?.Resource))).toEqual(
      sorted([
        agentDocumentArn,
        instance("i-0a1b2c3d4e5f60001"),
        instance("i-0a1b2c3d4e5f60002"),
        instance("i-0a1b2c3d4e5f60003"),
      ]),
    );
    expect(JSON.stringify(sendCommand)).not.toContain("i-0ffffffffffffffff");
    expect(agentDocumentName).toBe("AWS-RunShellScript");
    const definition = readFileSync(join(projectRoot, "statemachine", "restore.asl.json"), "utf8");
    expect(definition).toContain(`"DocumentName": "${agentDocumentName}"`);
  });
});

const signers = ["write-restore-plans", "set-restore-phase"];

describe("presigning", () => {
  it.each(signers)(
    "signs %s's URLs with a PresignRole only it may assume, for the 1 h that role chaining allows",
    (signer) => {
      const presignRole = restoreFunction(signer).presignRole;
      const role = resource(logicalIdOf(presignRole?.roleArn));
      expect(role.Properties.MaxSessionDuration).toBe(3600);
      expect(role.Properties.AssumeRolePolicyDocument).toEqual({
        Version: "2012-10-17",
        Statement: [
          {
            Effect: "Allow",
            Action: "sts:AssumeRole",
            Principal: { AWS: { "Fn::GetAtt": [roleOf(signer), "Arn"] } },
          },
        ],
      });
      expect(withAction(statementsOfRole(roleOf(signer)), "sts:")).toEqual([
        {
          Effect: "Allow",
          Action: "sts:AssumeRole",
          Resource: { "Fn::GetAtt": [logicalIdOf(presignRole?.roleArn), "Arn"] },
        },
      ]);
    },
  );

  it("lets no other restore function assume a role", () => {
    for (const step of restoreSteps.filter((candidate) => !signers.includes(candidate.handler))) {
      expect(withAction(statementsOfRole(roleOf(step.handler)), "sts:"), step.handler).toEqual([]);
      expect(restoreFunction(step.handler).presignRole).toBeUndefined();
    }
  });

  it.each(signers)(
    "lets %s's PresignRole read the snapshots' versions and the restore area, write only the restore area, use the key only through S3",
    (signer) => {
      const presignRole = restoreFunction(signer).presignRole;
      const statements = statementsOfRole(logicalIdOf(presignRole?.roleArn));
      const restorable = ["prod-eu", "edge"];
      expect(
        withAction(statements, "s3:").map((statement) => [
          asList(statement.Action),
          sorted(asList(statement.Resource)),
        ]),
      ).toEqual([
        [
          ["s3:GetObject", "s3:GetObjectVersion"],
          sorted(allClusters().map((cluster) => objects(`${cluster}/*.db`))),
        ],
        [
          ["s3:GetObject", "s3:PutObject"],
          sorted(restorable.map((cluster) => objects(`${cluster}/_restores/*`))),
        ],
      ]);
      const kms = withAction(statements, "kms:");
      expect(kms).toHaveLength(1);
      expect(kms[0]?.Condition?.StringEquals).toHaveProperty("kms:ViaService");
      expect(statements.every((statement) => /^(s3|kms):/.test(asList(statement.Action)[0] ?? ""))).toBe(
        true,
      );
    },
  );
});

describe("a restore tool staged in the bucket", () => {
  it("lets the signers' PresignRoles read <prefix>/_tools/* and nothing more, only when a target stages one", () => {
    const base = restoreTargets();
    const staged = buildStack({
      targets: parseTargetsFile({
        ...base,
        targets: base.targets.map((target) =>
          target.restore
            ? {
                ...target,
                restore: {
                  ...target.restore,
                  toolObject: { name: "etcdutl-3.5.17", sha256: "a".repeat(64) },
                },
              }
            : target,
        ),
      }),
    });
    const stagedResources = staged.template.toJSON().Resources as Record<string, Resource>;
    const writer =
      staged.stack.restore.functions[
        restoreSteps.find((step) => step.handler === "write-restore-plans")?.placeholder ?? ""
      ];
    const roleId = (resolved(staged.stack, writer?.presignRole?.roleArn) as { "Fn::GetAtt": [string] })[
      "Fn::GetAtt"
    ][0];
    const statements = Object.values(stagedResources)
      .filter((candidate) => candidate.Type === "AWS::IAM::Policy")
      .filter((policy) => (policy.Properties.Roles as { Ref: string }[]).some((role) => role.Ref === roleId))
      .flatMap((policy) => (policy.Properties.PolicyDocument as { Statement: Statement[] }).Statement);
    const bucket = resolved(staged.stack, staged.stack.storage.bucket.bucketArn);
    expect(statements.filter((statement) => JSON.stringify(statement.Resource).includes("_tools"))).toEqual([
      expect.objectContaining({
        Action: "s3:GetObject",
        Resource: { "Fn::Join": ["", [bucket, "/backups/etcd/_tools/*"]] },
      }),
    ]);
  });
});

describe("restore function grants", () => {
  it.each([
    [
      "validate-restore",
      [
        [
          ["s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion", "s3:GetObjectVersionTagging"],
          "*.db",
        ],
      ],
    ],
    ["request-approval", []],
    ["acquire-lease", []],
    [
      "write-restore-plans",
      [
        [["s3:PutObject"], "_restores/*"],
        // The snapshot version checked again once the lease is held (stored-snapshot-object.ts).
        [
          ["s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion", "s3:GetObjectVersionTagging"],
          "*.db",
        ],
      ],
    ],
    ["set-restore-phase", [[["s3:GetObject", "s3:PutObject"], "_restores/*"]]],
    ["check-restore-agents", [[["s3:GetObject"], "_restores/*"]]],
    ["check-etcd-health", []],
    ["compose-restore-message", []],
    ["release-lease", []],
  ] as [string, [string[], string][]][])(
    "gives %s only the object access its step needs",
    (handler, expected) => {
      const actual = withAction(statementsOfRole(roleOf(handler)), "s3:").map(
        (statement) => [asList(statement.Action).sort(), sorted(asList(statement.Resource))] as const,
      );
      const clustersFor = (suffix: string) => (suffix === "*.db" ? allClusters() : ["prod-eu", "edge"]);
      expect(sorted(actual as unknown as unknown[])).toEqual(
        sorted(
          expected.map(([actions, suffix]) => [
            [...actions].sort(),
            sorted(clustersFor(suffix).map((cluster) => objects(`${cluster}/${suffix}`))),
          ]),
        ),
      );
    },
  );

  it("lets only validate-restore and check-etcd-health read etcd TLS secrets, of restorable clusters only, in the VPC's stead nothing else", () => {
    for (const step of restoreSteps) {
      const statements = statementsOfRole(roleOf(step.handler));
      expect(withAction(statements, "eks:"), step.handler).toEqual([]);
      const secrets = withAction(statements, "secretsmanager:");
      if (!step.access.includes("etcd-tls")) {
        expect(secrets, step.handler).toEqual([]);
        continue;
      }
      expect(sorted(asList(secrets[0]?.Resource))).toEqual(
        sorted([
          "arn:aws:secretsmanager:eu-west-1:111122223333:secret:etcd-backup/prod-eu/etcd-client",
          "arn:aws:secretsmanager:eu-west-1:111122223333:secret:etcd-backup/prod-eu/etcd-client-??????",
        ]),
      );
    }
    // Stated outright rather than read from the steps' access lists: of every role of the restore workflow
    // (step functions, their PresignRoles, the state machine), exactly these two may use Secrets Manager,
    // each through one statement: GetSecretValue on the restorable clusters' etcd client TLS secret.
    const expectedSecretStatements: Record<string, number> = {
      "check-etcd-health": 1,
      "validate-restore": 1,
    };
    const stepRoleIds = new Map(restoreSteps.map((step) => [roleOf(step.handler), step.handler]));
    const restoreRoles = built.stack.restore.node
      .findAll()
      .filter((construct): construct is iam.Role => construct instanceof iam.Role)
      .map((role) => logicalIdOf(role.roleArn));
    expect(restoreRoles.length).toBeGreaterThan(restoreSteps.length);
    for (const roleId of stepRoleIds.keys()) expect(restoreRoles).toContain(roleId);
    const secretStatements = Object.fromEntries(
      restoreRoles
        .map(
          (roleId) =>
            [
              stepRoleIds.get(roleId) ?? roleId,
              withAction(statementsOfRole(roleId), "secretsmanager:"),
            ] as const,
        )
        .filter(([, statements]) => statements.length > 0),
    );
    expect(Object.keys(secretStatements).sort()).toEqual(["check-etcd-health", "validate-restore"]);
    for (const [handler, statements] of Object.entries(secretStatements)) {
      expect(statements, handler).toHaveLength(expectedSecretStatements[handler] ?? 0);
      for (const statement of statements) {
        expect(statement.Effect, handler).toBe("Allow");
        expect(statement.Action, handler).toBe("secretsmanager:GetSecretValue");
        expect(statement.Condition, handler).toBeUndefined();
        expect(sorted(asList(statement.Resource)), handler).toEqual(
          sorted([
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:etcd-backup/prod-eu/etcd-client",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:etcd-backup/prod-eu/etcd-client-??????",
          ]),
        );
      }
    }
    expect(
      restoreSteps
        .filter((step) => step.reachesClusters)
        .map((step) => step.handler)
        .sort(),
    ).toEqual(["check-etcd-health", "remove-agent-pods", "start-agent-pods", "validate-restore"]);
  });

  it("lets only the pod executor's functions reach a Kubernetes API, of the pod-executor clusters only", () => {
    for (const step of restoreSteps) {
      expect(step.access.includes("agent-pod-clusters"), step.handler).toBe(
        step.handler === "start-agent-pods" || step.handler === "remove-agent-pods",
      );
    }
    const kubeconfig = (name: string) => `arn:aws:secretsmanager:eu-west-1:111122223333:secret:${name}`;
    const member = (name: string) => ({
      name,
      nodeName: name,
      clientUrl: "https://10.0.0.1:2379",
      peerUrl: "https://10.0.0.1:2380",
    });
    const targets = parseTargetsFile({
      targets: [
        {
          name: "pods",
          schedule: "rate(1 hour)",
          access: { kind: "kubeconfig", secretArn: kubeconfig("pods-kubeconfig") },
          etcd: { tlsSecretArn: kubeconfig("pods-etcd-tls") },
          restore: { executor: "pod", toolPath: "/usr/local/bin/etcdutl", members: [member("cp-1")] },
        },
        {
          name: "eks-pods",
          schedule: "rate(1 hour)",
          access: { kind: "eks", clusterName: "prod", region: "eu-west-1" },
          restore: { executor: "pod", toolPath: "/usr/local/bin/etcdutl", members: [member("cp-1")] },
        },
        {
          name: "ssm",
          schedule: "rate(1 hour)",
          access: { kind: "kubeconfig", secretArn: kubeconfig("ssm-kubeconfig") },
          restore: { members: [{ ...member("cp-1"), instanceId: "i-0123456789abcdef0" }] },
        },
      ],
    }).targets;
    const access = agentPodClusterAccess(
      new Stack(undefined, "Access", { env: { account: "111122223333", region: "eu-west-1" } }),
      targets,
    );
    expect(access.clusters).toEqual(["pods", "eks-pods"]);
    expect(sorted(access.secretArns)).toEqual(
      sorted([kubeconfig("pods-kubeconfig"), `${kubeconfig("pods-kubeconfig")}-??????`]),
    );
    expect(access.eksClusterArns).toEqual([
      expect.stringMatching(/:eks:eu-west-1:111122223333:cluster\/prod$/),
    ]);
    expect(access.assumedRoleArns).toEqual([]);
  });

  it("lets request-approval write only the approvals partition, the one ApprovalTokens writes", async () => {
    const dynamo = withAction(statementsOfRole(roleOf("request-approval")), "dynamodb:");
    expect(dynamo).toEqual([
      {
        Effect: "Allow",
        Action: "dynamodb:PutItem",
        Resource: { "Fn::GetAtt": [logicalIdOf(built.stack.catalogue.table.tableName), "Arn"] },
        Condition: { "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": [approvalsPartition] } },
      },
    ]);
    const client = new DynamoDBClient({
      region: "eu-west-1",
      credentials: { accessKeyId: "a", secretAccessKey: "b" },
    });
    const mock = mockClient(DynamoDBDocumentClient);
    mock.on(PutCommand).resolves({});
    await new ApprovalTokens({ client, tableName: "t" }).save({
      targetCluster: "prod-eu",
      executionName: "e",
      executionArn: "arn:aws:states:eu-west-1:111122223333:execution:m:e",
      taskToken: "token",
      snapshotId: "s",
      requestedAt: "2025-01-01T00:00:00Z",
      expiresAt: 1,
    });
    const item = mock.commandCalls(PutCommand)[0]?.args[0].input.Item;
    mock.restore();
    expect(item?.[CatalogueTable.partitionKey.name]).toBe(approvalsPartition);
  });

  it("lets request-approval publish to the approvers' topic, and no other function", () => {
    const topic = { Ref: logicalIdOf(built.stack.restore.approvers.topic.topicArn) };
    for (const step of restoreSteps) {
      const publish = withAction(statementsOfRole(roleOf(step.handler)), "sns:");
      expect(publish, step.handler).toEqual(
        step.handler === "request-approval"
          ? [{ Effect: "Allow", Action: "sns:Publish", Resource: topic }]
          : [],
      );
    }
  });
});

describe("approvers topic and outputs", () => {
  it("encrypts the approvers' topic with a rotating key of its own, refuses non-TLS publishing, lets no alarm in", () => {
    const { approvers } = built.stack.restore;
    const { onCall } = built.stack;
    const keyId = logicalIdOf(approvers.key.keyArn);
    expect(keyId).not.toBe(logicalIdOf(onCall.key.keyArn));
    expect(resource(keyId).Properties.EnableKeyRotation).toBe(true);
    expect(resource(logicalIdOf(approvers.topic.topicArn)).Properties.KmsMasterKeyId).toEqual({
      "Fn::GetAtt": [keyId, "Arn"],
    });
    const policy = Object.values(resources).find(
      (candidate) =>
        candidate.Type === "AWS::SNS::TopicPolicy" &&
        JSON.stringify(candidate.Properties.Topics) ===
          JSON.stringify([{ Ref: logicalIdOf(approvers.topic.topicArn) }]),
    );
    if (!policy) throw new Error("no approvers' topic policy");
    const statements = (policy.Properties.PolicyDocument as { Statement: Statement[] }).Statement;
    expect(statements.filter((statement) => statement.Effect === "Allow")).toEqual([]);
    expect(statements).toEqual([
      expect.objectContaining({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }),
    ]);
    expect(JSON.stringify(resource(keyId).Properties.KeyPolicy)).not.toContain("cloudwatch.amazonaws.com");
  });

  it("subscribes the approvers' addresses to the approvers' topic only", () => {
    built.template.hasResourceProperties("AWS::SNS::Subscription", {
      Protocol: "email",
      Endpoint: "approver@example.com",
      TopicArn: { Ref: logicalIdOf(built.stack.restore.approvers.topic.topicArn) },
    });
    built.template.resourcePropertiesCountIs("AWS::SNS::Subscription", { Endpoint: Match.anyValue() }, 1);
  });

  it("outputs the restore state machine and the approvers' topic for the CLI", () => {
    const outputs = built.template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs[StackOutputs.restoreStateMachineArn]?.Value).toEqual(
      resolved(built.stack, built.stack.restore.stateMachine.stateMachineArn),
    );
    expect(outputs[StackOutputs.approversTopicArn]?.Value).toEqual(
      resolved(built.stack, built.stack.restore.approvers.topic.topicArn),
    );
  });
});
