// Freshness for targets whose backups can be more than a week apart, beyond the 7 days a CloudWatch
// alarm can look back: an hourly schedule per target invokes report-snapshot-age, which publishes the
// age of the cluster's newest verified snapshot, and an alarm fires when that age exceeds twice the
// schedule's interval — or when the check itself stops publishing.
import { Duration } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as iam from "aws-cdk-lib/aws-iam";
import type * as logs from "aws-cdk-lib/aws-logs";
import * as scheduler from "aws-cdk-lib/aws-scheduler";
import { Construct } from "constructs";
import { describeSeconds } from "../lambdas/core/config/schedule-interval.js";
import type { Target } from "../lambdas/core/config/target-config.js";
import { MetricNames } from "../lambdas/core/metric-names.js";
import { clusterAlarm } from "./cluster-alarm.js";
import { type BackupResources, LambdaStepFunction } from "./lambda-step-function.js";
import type { OnCallTopic } from "./on-call-topic.js";
import { serviceRole } from "./service-role.js";

/** How often the age is published, and how many silent or stale hours in a row raise the alarm. */
const checkPeriod = Duration.hours(1);
const periodsToAlarm = 3;

/** The check's function: a handler outside both state machines. */
export const snapshotAgeStep = {
  handler: "report-snapshot-age",
  description: "etcd-backup: publish the age of a cluster's newest verified snapshot",
} as const;

export interface SnapshotAgeCheckProps {
  /** Each with the longest gap between its backups, in seconds. */
  targets: readonly { target: Target; intervalSeconds: number }[];
  onCall: OnCallTopic;
  resources: BackupResources;
  projectRoot: string;
  handlersDirectory: string;
  logRetention: logs.RetentionDays;
}

export class SnapshotAgeCheck extends Construct {
  readonly function: LambdaStepFunction;
  readonly schedules: Record<string, scheduler.Schedule> = {};
  readonly alarms: Record<string, cloudwatch.Alarm> = {};

  constructor(scope: Construct, id: string, props: SnapshotAgeCheckProps) {
    super(scope, id);
    // Reads the catalogue only; it never reaches a cluster, so it needs no VPC and no cluster access.
    this.function = new LambdaStepFunction(this, "ReportSnapshotAge", {
      ...snapshotAgeStep,
      sizing: { memorySize: 256, timeout: Duration.seconds(30) },
      access: ["newest-verified"],
      resources: props.resources,
      projectRoot: props.projectRoot,
      handlersDirectory: props.handlersDirectory,
      logRetention: props.logRetention,
    });
    const schedulerRole = serviceRole(
      this,
      "SchedulerRole",
      "scheduler.amazonaws.com",
      "etcd-backup: EventBridge Scheduler runs the snapshot age check",
    );
    schedulerRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ["lambda:InvokeFunction"],
        resources: [this.function.function.functionArn],
      }),
    );

    for (const { target, intervalSeconds } of props.targets) {
      this.schedules[target.name] = new scheduler.Schedule(this, `Schedule-${target.name}`, {
        description: `etcd-backup: age of cluster ${target.name}'s newest verified snapshot`,
        schedule: scheduler.ScheduleExpression.rate(checkPeriod),
        // A target of our own rather than LambdaInvoke, whose grant adds every version (`:*`) of the function.
        target: {
          bind: () => ({
            arn: this.function.function.functionArn,
            role: schedulerRole,
            input: scheduler.ScheduleTargetInput.fromObject({ input: { cluster: target.name } }),
            // A check that cannot run within its hour is replaced by the next one.
            retryPolicy: { maximumEventAgeInSeconds: checkPeriod.toSeconds(), maximumRetryAttempts: 3 },
          }),
        },
      });
      this.alarms[target.name] = clusterAlarm(this, `SnapshotTooOld-${target.name}`, {
        cluster: target.name,
        metricName: MetricNames.newestVerifiedSnapshotAge,
        statistic: cloudwatch.Stats.MAXIMUM,
        period: checkPeriod,
        nameSuffix: "no-verified-snapshot",
        onCall: props.onCall,
        alarmDescription: `etcd-backup: the newest verified snapshot of cluster ${target.name} is older than ${describeSeconds(2 * intervalSeconds)} (twice its schedule ${target.schedule}), or the hourly age check has not reported for ${periodsToAlarm} hours.`,
        threshold: 2 * intervalSeconds,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: periodsToAlarm,
        datapointsToAlarm: periodsToAlarm,
        // No age published means no verified snapshot at all, or a check that no longer runs.
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
    }
  }
}
