// The scheduled backup: one Lambda function per step of statemachine/backup.asl.json, the state machine
// deployed from that file, and an EventBridge Scheduler schedule per target that starts it.
import { join } from "node:path";
import { Duration, Size } from "aws-cdk-lib";
import type * as logs from "aws-cdk-lib/aws-logs";
import * as scheduler from "aws-cdk-lib/aws-scheduler";
import * as schedulerTargets from "aws-cdk-lib/aws-scheduler-targets";
import type * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import type { Target } from "../lambdas/core/config/target-config.js";
import { AslStateMachine } from "./asl-state-machine.js";
import { EksAccessEntries } from "./eks-access.js";
import type { BackupResources, LambdaStepFunction, StepNetwork, StepSizing } from "./lambda-step-function.js";
import type { OnCallTopic } from "./on-call-topic.js";
import { serviceRole } from "./service-role.js";
import { createStepFunctions, smallStep, stepRoles, type WorkflowStep } from "./workflow-steps.js";

// 30 s short of Lambda's 15 minutes: the state's TimeoutSeconds (900) must not fire while the function
// still streams, or the failure path would abort the upload under a running function.
const streaming: StepSizing = { memorySize: 1024, timeout: Duration.seconds(870) };

/**
 * The steps and what each may touch. Each Lambda times out at least 30 s before its state's TimeoutSeconds
 * in the ASL (Step Functions' clock starts before the function runs), so the function fails first.
 * Every function receives every environment variable (the handlers' environment schema requires them);
 * the access list decides the grants.
 */
export const backupSteps: readonly WorkflowStep[] = [
  {
    placeholder: "AcquireLeaseFunctionArn",
    handler: "acquire-lease",
    description: "etcd-backup: take the cluster's lease (or recognise a duplicate tick)",
    sizing: smallStep(30),
    access: ["catalogue"],
  },
  {
    placeholder: "ResolveTargetFunctionArn",
    handler: "resolve-target",
    description: "etcd-backup: reach the cluster, choose the member, mint the snapshot id",
    sizing: smallStep(60),
    access: ["targets", "clusters"],
    reachesClusters: true,
  },
  {
    placeholder: "TakeSnapshotFunctionArn",
    handler: "take-snapshot",
    description: "etcd-backup: stream the member's snapshot into S3 through the integrity tap",
    sizing: streaming,
    access: ["catalogue", "targets", "clusters", "write-snapshots"],
    nativeCrc32c: true,
    reachesClusters: true,
  },
  {
    placeholder: "VerifySnapshotFunctionArn",
    handler: "verify-snapshot",
    description: "etcd-backup: read the stored snapshot back, prove it sound, compare the member's HashKV",
    // Verification stages the object in /tmp: as large as Lambda allows.
    sizing: { ...streaming, ephemeralStorage: Size.mebibytes(10240) },
    // Reads back from S3, then asks the source member for its HashKV the way the snapshot step reached it.
    access: ["catalogue", "verify-snapshots", "targets", "clusters"],
    nativeCrc32c: true,
    reachesClusters: true,
  },
  {
    placeholder: "PruneSnapshotsFunctionArn",
    handler: "prune-snapshots",
    description: "etcd-backup: apply the retention policy (object versions first, then rows)",
    sizing: smallStep(60),
    access: ["catalogue", "targets", "prune-snapshots"],
  },
  {
    placeholder: "ReleaseLeaseFunctionArn",
    handler: "release-lease",
    description: "etcd-backup: give the cluster's lease back",
    sizing: smallStep(30),
    access: ["catalogue"],
  },
  {
    placeholder: "MarkFailedFunctionArn",
    handler: "mark-failed",
    description: "etcd-backup: mark the run FAILED, abort its upload, release the lease, word the alert",
    sizing: smallStep(60),
    access: ["catalogue", "abort-uploads"],
  },
];

export interface BackupWorkflowProps {
  resources: BackupResources;
  targets: readonly Target[];
  onCall: OnCallTopic;
  projectRoot: string;
  handlersDirectory: string;
  logRetention: logs.RetentionDays;
  network?: StepNetwork;
  /** Map the cluster-facing roles into the named EKS clusters with access entries (default true). */
  eksAccessEntries?: boolean;
}

export class BackupWorkflow extends Construct {
  readonly functions: Record<string, LambdaStepFunction>;
  readonly stateMachine: sfn.StateMachine;
  readonly schedules: Record<string, scheduler.Schedule> = {};

  constructor(scope: Construct, id: string, props: BackupWorkflowProps) {
    super(scope, id);
    this.functions = createStepFunctions(this, backupSteps, {
      resources: props.resources,
      ...(props.network ? { network: props.network } : {}),
      projectRoot: props.projectRoot,
      handlersDirectory: props.handlersDirectory,
      logRetention: props.logRetention,
    });

    if (props.eksAccessEntries ?? true) {
      new EksAccessEntries(this, "EksAccess", {
        targets: props.targets,
        roles: stepRoles(this.functions, backupSteps, (step) => step.reachesClusters === true),
      });
    }

    const machine = new AslStateMachine(this, "Backup", {
      definitionFile: join(props.projectRoot, "statemachine", "backup.asl.json"),
      functions: Object.fromEntries(
        Object.entries(this.functions).map(([name, step]) => [name, step.function]),
      ),
      values: { OnCallTopicArn: props.onCall.topic.topicArn },
      logRetention: props.logRetention,
      grant: (role) => props.onCall.grantPublish(role),
    });
    this.stateMachine = machine.stateMachine;

    // One role for all schedules: it may start this state machine and nothing else.
    const schedulerRole = serviceRole(
      this,
      "SchedulerRole",
      "scheduler.amazonaws.com",
      "etcd-backup: EventBridge Scheduler starts backup executions",
    );
    for (const target of props.targets) {
      this.schedules[target.name] = new scheduler.Schedule(this, `Schedule-${target.name}`, {
        description: `etcd-backup of cluster ${target.name}`,
        schedule: scheduler.ScheduleExpression.expression(target.schedule),
        timeWindow: scheduler.TimeWindow.off(),
        target: new schedulerTargets.StepFunctionsStartExecution(this.stateMachine, {
          role: schedulerRole,
          input: scheduler.ScheduleTargetInput.fromObject({
            cluster: target.name,
            scheduledTime: scheduler.ContextAttribute.scheduledTime,
          }),
          // A start that cannot happen within the hour is left to the next tick (and the freshness alarm).
          maxEventAge: Duration.hours(1),
          retryAttempts: 10,
        }),
      });
    }
  }
}
