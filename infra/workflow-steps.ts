// A workflow's Lambda steps, declared as data (backupSteps, restoreSteps) and built the same way for both
// state machines: one LambdaStepFunction per step, named after its handler, in the VPC when it reaches
// the clusters.
import { Duration } from "aws-cdk-lib";
import type * as iam from "aws-cdk-lib/aws-iam";
import type * as logs from "aws-cdk-lib/aws-logs";
import type { Construct } from "constructs";
import {
  type BackupResources,
  LambdaStepFunction,
  type RestoreResources,
  type StepAccess,
  type StepNetwork,
  type StepSizing,
} from "./lambda-step-function.js";

export interface WorkflowStep {
  /** The ASL placeholder that receives the function's ARN. */
  placeholder: string;
  handler: string;
  description: string;
  sizing: StepSizing;
  access: StepAccess[];
  /** Talks to etcd or a Kubernetes API: placed in the VPC when one is given. */
  reachesClusters?: boolean;
  /** Ships the native CRC32C module (steps that checksum whole snapshots). */
  nativeCrc32c?: boolean;
  /** Carries the restore agent's script. */
  restoreAgentScript?: boolean;
}

/** A short step: 256 MB, the given timeout. */
export const smallStep = (seconds: number): StepSizing => ({
  memorySize: 256,
  timeout: Duration.seconds(seconds),
});

export interface WorkflowStepSettings {
  resources: BackupResources;
  restore?: RestoreResources;
  network?: StepNetwork;
  projectRoot: string;
  handlersDirectory: string;
  logRetention: logs.RetentionDays;
}

/** The steps' functions, by ASL placeholder. */
export function createStepFunctions(
  scope: Construct,
  steps: readonly WorkflowStep[],
  settings: WorkflowStepSettings,
): Record<string, LambdaStepFunction> {
  return Object.fromEntries(
    steps.map((step) => [
      step.placeholder,
      new LambdaStepFunction(scope, stepConstructId(step), {
        handler: step.handler,
        description: step.description,
        sizing: step.sizing,
        access: step.access,
        resources: settings.resources,
        ...(settings.restore ? { restore: settings.restore } : {}),
        nativeCrc32c: step.nativeCrc32c ?? false,
        restoreAgentScript: step.restoreAgentScript ?? false,
        ...(settings.network && step.reachesClusters ? { network: settings.network } : {}),
        projectRoot: settings.projectRoot,
        handlersDirectory: settings.handlersDirectory,
        logRetention: settings.logRetention,
      }),
    ]),
  );
}

/** The roles of the steps `chosen` picks, by construct id: what an EKS access entry maps into a cluster. */
export function stepRoles(
  functions: Record<string, LambdaStepFunction>,
  steps: readonly WorkflowStep[],
  chosen: (step: WorkflowStep) => boolean,
): Record<string, iam.IRole> {
  return Object.fromEntries(
    steps
      .filter(chosen)
      .map((step) => [stepConstructId(step), (functions[step.placeholder] as LambdaStepFunction).role]),
  );
}

/** `take-snapshot` → `TakeSnapshot`. */
function stepConstructId(step: WorkflowStep): string {
  return step.handler.replace(/(^|-)([a-z])/g, (_match, _dash, letter: string) => letter.toUpperCase());
}
