import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { App } from "aws-cdk-lib";
import { beforeEach, describe, expect, it } from "vitest";
import { readAppSettings } from "../../infra/etcd-backup-app.js";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import { exampleTargetsFile } from "./stack-fixtures.js";

let directory: string;
beforeEach(() => {
  directory = mkdtempSync(join(tmpdir(), "app-settings-"));
});

const appWith = (context: Record<string, unknown> = {}) => new App({ context });

describe("readAppSettings", () => {
  it("reads etcd-backup.targets.json from the working directory by default", () => {
    copyFileSync(exampleTargetsFile(), join(directory, "etcd-backup.targets.json"));
    const settings = readAppSettings(appWith(), directory);
    expect(settings.targetsFile).toBe(join(directory, "etcd-backup.targets.json"));
    expect(settings.targets.targets.map((target) => target.name)).toEqual(["prod-eu", "staging"]);
    expect(settings).toMatchObject({ stackName: "EtcdBackup", alertEmails: [], eksAccessEntries: true });
    expect(settings.objectLock).toBeUndefined();
  });

  it("accepts the committed example as a valid targets file", () => {
    const settings = readAppSettings(appWith({ targets: exampleTargetsFile() }), directory);
    expect(settings.targets).toEqual(parseTargetsFile(settings.targets));
  });

  it("says how to start when the targets file is missing", () => {
    expect(() => readAppSettings(appWith(), directory)).toThrow(
      /cannot read the targets file .*etcd-backup\.targets\.json.*copy etcd-backup\.targets\.example\.json/,
    );
  });

  it("refuses the demo's local restore executor in a file to deploy", () => {
    const file = join(directory, "local.json");
    const member = { name: "m1", clientUrl: "http://127.0.0.1:2379", peerUrl: "http://127.0.0.1:2380" };
    writeFileSync(
      file,
      JSON.stringify({
        targets: [
          { name: "demo", schedule: "rate(1 hour)", restore: { executor: "local", members: [member] } },
        ],
      }),
    );
    expect(() => readAppSettings(appWith({ targets: file }), directory)).toThrow(
      /demo: restore\.executor "local" is the demo's .*deploy with "ssm" or "pod"/,
    );
  });

  it("names the invalid field of a targets file", () => {
    const file = join(directory, "bad.json");
    writeFileSync(file, JSON.stringify({ targets: [{ name: "Prod_1", schedule: "every hour" }] }));
    expect(() => readAppSettings(appWith({ targets: file }), directory)).toThrow(
      /targets\.0\.name: .*targets\.0\.schedule/,
    );
    writeFileSync(file, "{ not json");
    expect(() => readAppSettings(appWith({ targets: file }), directory)).toThrow(/is not JSON/);
  });

  it("reads alert and approver e-mails, Object Lock and the stack name from context", () => {
    const settings = readAppSettings(
      appWith({
        targets: exampleTargetsFile(),
        alertEmails: " oncall@example.com, sre@example.com ",
        approverEmails: "lead@example.com",
        objectLockMode: "compliance",
        objectLockDays: "30",
        stackName: "EtcdBackupProd",
        eksAccessEntries: "false",
        vpc: '{"vpcId":"vpc-1","subnetIds":["subnet-1","subnet-2"],"securityGroupIds":["sg-1"]}',
        replicaBucketArn: "arn:aws:s3:::etcd-snapshots-replica",
        replicaKmsKeyArn: "arn:aws:kms:eu-central-1:210987654321:key/mrk-0123456789abcdef",
        replicaAccount: "210987654321",
      }),
      directory,
    );
    expect(settings).toMatchObject({
      stackName: "EtcdBackupProd",
      alertEmails: ["oncall@example.com", "sre@example.com"],
      approverEmails: ["lead@example.com"],
      objectLock: { mode: "COMPLIANCE", days: 30 },
      eksAccessEntries: false,
      vpc: { vpcId: "vpc-1", subnetIds: ["subnet-1", "subnet-2"], securityGroupIds: ["sg-1"] },
      replica: {
        bucketArn: "arn:aws:s3:::etcd-snapshots-replica",
        kmsKeyArn: "arn:aws:kms:eu-central-1:210987654321:key/mrk-0123456789abcdef",
        account: "210987654321",
      },
    });
  });

  it.each([
    [{ alertEmails: "oncall" }, /alertEmails: "oncall" is not an e-mail address/],
    [{ approverEmails: "lead" }, /approverEmails: "lead" is not an e-mail address/],
    [{ objectLockMode: "FOREVER", objectLockDays: 3 }, /objectLockMode: expected GOVERNANCE or COMPLIANCE/],
    [{ objectLockDays: 0 }, /objectLockDays: expected a whole number/],
    [{ vpc: "vpc-1" }, /vpc: expected JSON/],
    [{ replicaBucketArn: "etcd-snapshots-replica" }, /replicaBucketArn: expected arn:aws:s3:::<bucket>/],
    // A replica without its own key would be encrypted with S3's default: refused, snapshots hold Secrets.
    [{ replicaBucketArn: "arn:aws:s3:::replica" }, /replicaKmsKeyArn: expected the ARN of a KMS key/],
    [
      { replicaBucketArn: "arn:aws:s3:::replica", replicaKmsKeyArn: "alias/replica" },
      /replicaKmsKeyArn: expected the ARN/,
    ],
    [{ replicaAccount: "123" }, /replicaBucketArn: expected/],
    [{ vpc: { vpcId: "vpc-1", subnetIds: [] } }, /vpc.subnetIds: expected a non-empty list/],
    [
      { vpc: { vpcId: "vpc-1", subnetIds: ["subnet-1"], securityGroupIds: ["default"] } },
      /vpc.securityGroupIds/,
    ],
  ])("refuses invalid options %j", (context, message) => {
    expect(() => readAppSettings(appWith({ targets: exampleTargetsFile(), ...context }), directory)).toThrow(
      message,
    );
  });
});
