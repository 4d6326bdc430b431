// Builds the stack the way bin/app.ts does (cdk.json's feature flags included), with bundling off unless
// a test asks for it, so that Template assertions stay fast and need no handler bundles.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { App } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { EtcdBackupStack, type EtcdBackupStackProps, projectRoot } from "../../infra/etcd-backup-stack.js";
import { parseTargetsFile, type TargetsFile } from "../../lambdas/core/config/target-config.js";

export { projectRoot };

export function cdkJsonContext(): Record<string, unknown> {
  return (
    JSON.parse(readFileSync(join(projectRoot, "cdk.json"), "utf8")) as { context: Record<string, unknown> }
  ).context;
}

export function exampleTargetsFile(): string {
  return join(projectRoot, "etcd-backup.targets.example.json");
}

/** The committed example plus the access kinds it does not show, for the grants they bring. */
export function testTargets(): TargetsFile {
  const example = JSON.parse(readFileSync(exampleTargetsFile(), "utf8")) as { targets: unknown[] };
  return parseTargetsFile({
    prefix: "backups/etcd",
    targets: [
      ...example.targets,
      {
        name: "edge",
        schedule: "rate(15 minutes)",
        access: {
          kind: "kubeconfig",
          secretArn: "arn:aws:secretsmanager:eu-west-1:111122223333:secret:edge-kubeconfig-AbCdEf",
        },
        etcd: { source: "exec" },
      },
      {
        name: "partner",
        schedule: "rate(12 hours)",
        access: {
          kind: "eks",
          clusterName: "partner-main",
          region: "us-east-1",
          roleArn: "arn:aws:iam::444455556666:role/etcd-backup-reader",
        },
      },
    ],
  });
}

export interface BuiltStack {
  app: App;
  stack: EtcdBackupStack;
  template: Template;
}

export function buildStack(
  props: Partial<EtcdBackupStackProps> = {},
  options: { bundling?: boolean; stackName?: string } = {},
): BuiltStack {
  const app = new App({
    context: { ...cdkJsonContext(), ...(options.bundling ? {} : { "aws:cdk:bundling-stacks": [] }) },
  });
  const stack = new EtcdBackupStack(app, options.stackName ?? "EtcdBackup", {
    targets: testTargets(),
    ...props,
  });
  return { app, stack, template: Template.fromStack(stack) };
}

/** A template value as CloudFormation will see it (tokens resolved). */
export function resolved(stack: EtcdBackupStack, value: unknown): unknown {
  return stack.resolve(value);
}
