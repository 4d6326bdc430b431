// The app as bin/app.ts builds it, synthesized with cdk-nag's AwsSolutions checks and CDK's own
// CloudFormation rules: no finding may be left unacknowledged.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { App } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import { describe, expect, it } from "vitest";
import { buildEtcdBackupApp, readAppSettings } from "../../infra/etcd-backup-app.js";
import { cdkJsonContext, exampleTargetsFile, projectRoot } from "./stack-fixtures.js";

interface ValidationReport {
  pluginReports: { pluginName: string; violations?: { ruleName: string }[] }[];
}

/** Synthesizes the app with bundling off; returns the validation report's findings. */
function synthWithChecks(context: Record<string, unknown>) {
  const app = new App({
    context: {
      ...cdkJsonContext(),
      "aws:cdk:bundling-stacks": [],
      targets: exampleTargetsFile(),
      ...context,
    },
  });
  const stack = buildEtcdBackupApp(app, readAppSettings(app, projectRoot));
  const assembly = app.synth();
  const report = JSON.parse(
    readFileSync(join(assembly.directory, "validation-report.json"), "utf8"),
  ) as ValidationReport;
  return {
    stack,
    findings: report.pluginReports.flatMap((plugin) =>
      (plugin.violations ?? []).map((violation) => `${plugin.pluginName}: ${violation.ruleName}`),
    ),
  };
}

describe("cdk-nag AwsSolutions checks", () => {
  it("pass on the app built from the example targets file, with no finding left unacknowledged", () => {
    const { findings, stack } = synthWithChecks({});
    expect(findings).toEqual([]);
    expect(stack.backup.stateMachine).toBeDefined();
    expect(stack.restore.stateMachine).toBeDefined();
  });

  it("pass with the optional parts on: Object Lock, e-mail alerts and approvers, VPC placement, a weekly schedule's age check, nodes named by tag", () => {
    const example = JSON.parse(readFileSync(exampleTargetsFile(), "utf8")) as {
      targets: { name: string; restore?: { members: Array<Record<string, unknown>> } }[];
    };
    const [first] = example.targets;
    const weekly = {
      ...first,
      name: "archive",
      schedule: "cron(0 3 ? * SUN *)",
      ...(first?.restore
        ? {
            restore: {
              ...first.restore,
              members: first.restore.members.map(({ instanceId: _id, ...member }) => ({
                ...member,
                instanceTag: { key: "etcd-member", value: String(member.name) },
              })),
            },
          }
        : {}),
    };
    const targets = join(mkdtempSync(join(tmpdir(), "etcd-backup-nag-")), "targets.json");
    writeFileSync(targets, JSON.stringify({ ...example, targets: [...example.targets, weekly] }));
    const { findings, stack } = synthWithChecks({
      targets,
      objectLockMode: "GOVERNANCE",
      objectLockDays: 30,
      alertEmails: "oncall@example.com",
      approverEmails: "approver@example.com",
      vpc: JSON.stringify({ vpcId: "vpc-0123456789abcdef0", subnetIds: ["subnet-0aaaaaaaaaaaaaaaa"] }),
      replicaBucketArn: "arn:aws:s3:::etcd-snapshots-replica",
      replicaKmsKeyArn: "arn:aws:kms:eu-central-1:210987654321:key/0123abcd-0123-abcd-0123-0123456789ab",
      replicaAccount: "210987654321",
    });
    expect(findings).toEqual([]);
    expect(stack.monitoring.replicationAlarm).toBeDefined();
    expect(stack.node.tryFindChild("ClusterAccess")).toBeDefined();
    expect(stack.monitoring.ageCheck?.alarms.archive).toBeDefined();
  });

  it("fail synthesis on a finding nobody acknowledged", () => {
    const app = new App({
      context: { ...cdkJsonContext(), "aws:cdk:bundling-stacks": [], targets: exampleTargetsFile() },
    });
    const stack = buildEtcdBackupApp(app, readAppSettings(app, projectRoot));
    stack.backup.stateMachine.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ["s3:*"], resources: [stack.storage.bucket.arnForObjects("*")] }),
    );
    expect(() => app.synth()).toThrow(/AwsSolutions-IAM5/);
  });
});
