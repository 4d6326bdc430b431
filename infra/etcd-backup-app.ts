// Assembles the CDK app from its context: the targets file (validated with the same schema the handlers
// and the CLI use), deployment options, and cdk-nag's AwsSolutions checks, which fail synthesis on any
// finding not acknowledged in code with a reason.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { type App, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { parseTargetsFile, type TargetsFile } from "../lambdas/core/config/target-config.js";
import { EtcdBackupStack, type EtcdBackupStackProps, type VpcPlacement } from "./etcd-backup-stack.js";
import type { ObjectLockSettings, ReplicaSettings } from "./snapshot-storage.js";
import { defaultStackName } from "./stack-outputs.js";

export const defaultTargetsFile = "etcd-backup.targets.json";

export interface AppSettings {
  stackName: string;
  targetsFile: string;
  targets: TargetsFile;
  alertEmails: string[];
  approverEmails: string[];
  objectLock?: ObjectLockSettings;
  replica?: ReplicaSettings;
  eksAccessEntries: boolean;
  vpc?: VpcPlacement;
}

/**
 * Reads the app's settings from CDK context (`-c key=value` or cdk.json):
 * `targets` (path of the targets file), `alertEmails` and `approverEmails` (comma-separated), `objectLockMode` +
 * `objectLockDays`, `replicaBucketArn` + `replicaKmsKeyArn` (+ `replicaAccount` when it is another account's),
 * `stackName`, `eksAccessEntries` (`false` for EKS clusters in CONFIG_MAP mode), `vpc`
 * (JSON: `{"vpcId": "vpc-…", "subnetIds": ["subnet-…"], "securityGroupIds": ["sg-…"]}`, the last optional).
 */
export function readAppSettings(app: App, cwd = process.cwd()): AppSettings {
  const context = (key: string): unknown => app.node.tryGetContext(key);
  const targetsFile = resolve(cwd, String(context("targets") ?? defaultTargetsFile));
  let content: string;
  try {
    content = readFileSync(targetsFile, "utf8");
  } catch (error) {
    throw new Error(
      `cannot read the targets file ${targetsFile} (${(error as Error).message}): copy etcd-backup.targets.example.json to ${defaultTargetsFile}, or pass -c targets=<path>`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(content);
  } catch (error) {
    throw new Error(`the targets file ${targetsFile} is not JSON: ${(error as Error).message}`);
  }
  const targets = parseTargetsFile(json, targetsFile);
  // The local executor runs the agents as processes of the machine that runs the state machine: the demo's.
  const demoOnly = targets.targets.filter((target) => target.restore?.executor === "local");
  if (demoOnly.length > 0) {
    throw new Error(
      `${targetsFile}: ${demoOnly.map((target) => target.name).join(", ")}: restore.executor "local" is the demo's (agents on the machine that runs the workflow); deploy with "ssm" or "pod"`,
    );
  }

  const emailList = (key: string): string[] => {
    const emails = context(key);
    const list = (Array.isArray(emails) ? emails.map(String) : String(emails ?? "").split(","))
      .map((email) => email.trim())
      .filter((email) => email.length > 0);
    for (const email of list) {
      if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email))
        throw new Error(`${key}: "${email}" is not an e-mail address`);
    }
    return list;
  };

  const settings: AppSettings = {
    stackName: String(context("stackName") ?? defaultStackName),
    targetsFile,
    targets,
    alertEmails: emailList("alertEmails"),
    approverEmails: emailList("approverEmails"),
    eksAccessEntries: String(context("eksAccessEntries") ?? "true") !== "false",
  };
  const lockMode = context("objectLockMode");
  const lockDays = context("objectLockDays");
  if (lockMode !== undefined || lockDays !== undefined) {
    const mode = String(lockMode ?? "GOVERNANCE").toUpperCase();
    const days = Number(lockDays);
    if (mode !== "GOVERNANCE" && mode !== "COMPLIANCE") {
      throw new Error(`objectLockMode: expected GOVERNANCE or COMPLIANCE, got "${String(lockMode)}"`);
    }
    if (!Number.isInteger(days) || days < 1) {
      throw new Error(`objectLockDays: expected a whole number of days ≥ 1, got "${String(lockDays)}"`);
    }
    settings.objectLock = { mode, days };
  }
  const replica = readReplicaSettings(context);
  if (replica) settings.replica = replica;
  const vpc = context("vpc");
  if (vpc !== undefined) settings.vpc = parseVpcPlacement(vpc);
  return settings;
}

function readReplicaSettings(context: (key: string) => unknown): ReplicaSettings | undefined {
  const [bucketArn, kmsKeyArn, account] = ["replicaBucketArn", "replicaKmsKeyArn", "replicaAccount"].map(
    (key) => {
      const value = context(key);
      return value === undefined ? undefined : String(value).trim();
    },
  );
  if (bucketArn === undefined && kmsKeyArn === undefined && account === undefined) return undefined;
  if (!bucketArn || !/^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucketArn)) {
    throw new Error(`replicaBucketArn: expected arn:aws:s3:::<bucket>, got "${bucketArn ?? ""}"`);
  }
  // Replicas are encrypted with a key of the replica's region: snapshots hold the cluster's Secrets.
  if (!kmsKeyArn || !/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/.test(kmsKeyArn)) {
    throw new Error(
      `replicaKmsKeyArn: expected the ARN of a KMS key in the replica's region (arn:aws:kms:<region>:<account>:key/<id>), got "${kmsKeyArn ?? ""}"`,
    );
  }
  if (account !== undefined && !/^\d{12}$/.test(account)) {
    throw new Error(`replicaAccount: expected a 12-digit account id, got "${account}"`);
  }
  return { bucketArn, kmsKeyArn, ...(account ? { account } : {}) };
}

function parseVpcPlacement(value: unknown): VpcPlacement {
  let placement: unknown = value;
  if (typeof value === "string") {
    try {
      placement = JSON.parse(value);
    } catch {
      throw new Error(`vpc: expected JSON such as {"vpcId":"vpc-…","subnetIds":["subnet-…"]}, got ${value}`);
    }
  }
  const { vpcId, subnetIds, securityGroupIds } = (placement ?? {}) as Record<string, unknown>;
  const ids = (list: unknown, prefix: string) =>
    Array.isArray(list) &&
    list.length > 0 &&
    list.every((id) => typeof id === "string" && id.startsWith(prefix));
  if (typeof vpcId !== "string" || !vpcId.startsWith("vpc-")) throw new Error("vpc.vpcId: expected vpc-…");
  if (!ids(subnetIds, "subnet-")) throw new Error("vpc.subnetIds: expected a non-empty list of subnet-… ids");
  if (securityGroupIds !== undefined && !ids(securityGroupIds, "sg-")) {
    throw new Error("vpc.securityGroupIds: expected a non-empty list of sg-… ids");
  }
  return {
    vpcId,
    subnetIds: subnetIds as string[],
    ...(securityGroupIds ? { securityGroupIds: securityGroupIds as string[] } : {}),
  };
}

/** Adds the stack and the AwsSolutions checks to `app`. */
export function buildEtcdBackupApp(
  app: App,
  settings: AppSettings,
  overrides: Partial<EtcdBackupStackProps> = {},
): EtcdBackupStack {
  const stack = new EtcdBackupStack(app, settings.stackName, {
    description:
      "etcd-backup: scheduled, verified etcd snapshots in S3 with a DynamoDB catalogue, and approved restores",
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
    targets: settings.targets,
    alertEmails: settings.alertEmails,
    approverEmails: settings.approverEmails,
    eksAccessEntries: settings.eksAccessEntries,
    ...(settings.objectLock ? { objectLock: settings.objectLock } : {}),
    ...(settings.replica ? { replica: settings.replica } : {}),
    ...(settings.vpc ? { vpc: settings.vpc } : {}),
    ...overrides,
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return stack;
}
