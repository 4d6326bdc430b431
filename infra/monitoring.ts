// What tells on-call that backups stopped working without any step noticing: executions that ended
// FAILED, TIMED_OUT or ABORTED (a Catch does not run on timeout or abort), and clusters without a
// verified snapshot for twice their schedule's interval (the schedule or the state machine may never
// have started at all); and, ahead of time, etcd client certificates within 30 days of expiry; snapshots
// that S3 failed to replicate.
import { Annotations, Duration, Stack } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as cloudwatchActions from "aws-cdk-lib/aws-cloudwatch-actions";
import * as events from "aws-cdk-lib/aws-events";
import type * as logs from "aws-cdk-lib/aws-logs";
import type * as s3 from "aws-cdk-lib/aws-s3";
import type * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import {
  alarmWindowFor,
  describeSeconds,
  longestScheduleGapSeconds,
  maxAlarmWindowSeconds,
} from "../lambdas/core/config/schedule-interval.js";
import type { Target } from "../lambdas/core/config/target-config.js";
import { expiryWarningDays } from "../lambdas/core/kube/certificate-expiry.js";
import { MetricNames } from "../lambdas/core/metric-names.js";
import { clusterAlarm } from "./cluster-alarm.js";
import type { BackupResources } from "./lambda-step-function.js";
import type { OnCallTopic } from "./on-call-topic.js";
import { serviceRole } from "./service-role.js";
import { SnapshotAgeCheck } from "./snapshot-age-check.js";
import { replicationRuleId } from "./snapshot-storage.js";

/** A run takes at most the state machine's own timeout: a window shorter than interval + this misfires. */
const longestRunSeconds = 3600;

export interface MonitoringProps {
  onCall: OnCallTopic;
  /** Workflows whose executions must not end badly unnoticed, by name for the message. */
  stateMachines: Record<string, sfn.IStateMachine>;
  targets: readonly Target[];
  /** For the age check of targets whose backups are more than a week apart. */
  ageCheck: {
    resources: BackupResources;
    projectRoot: string;
    handlersDirectory: string;
    logRetention: logs.RetentionDays;
  };
  /** The snapshot bucket and its replica, when snapshots are replicated. */
  replication?: { source: s3.IBucket; destination: s3.IBucket };
}

export class Monitoring extends Construct {
  readonly failedExecutionRule: events.Rule;
  /** Per target: on the verified-snapshot count, or (backups more than a week apart) on the newest one's age. */
  readonly freshnessAlarms: Record<string, cloudwatch.Alarm> = {};
  readonly ageCheck?: SnapshotAgeCheck;
  /** Per target that holds an etcd client certificate: it expires within 30 days. */
  readonly certificateAlarms: Record<string, cloudwatch.Alarm> = {};
  /** Per target: a member's HashKV at a snapshot's revision differs from the snapshot's. */
  readonly divergenceAlarms: Record<string, cloudwatch.Alarm> = {};
  /** S3 failed to replicate an object to the replica bucket. */
  readonly replicationAlarm?: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const stack = Stack.of(this);

    this.failedExecutionRule = new events.Rule(this, "ExecutionEndedBadly", {
      description: "etcd-backup: an execution ended FAILED, TIMED_OUT or ABORTED",
      eventPattern: {
        source: ["aws.states"],
        detailType: ["Step Functions Execution Status Change"],
        detail: {
          status: ["FAILED", "TIMED_OUT", "ABORTED"],
          stateMachineArn: Object.values(props.stateMachines).map((machine) => machine.stateMachineArn),
        },
      },
    });
    const executionArn = events.EventField.fromPath("$.detail.executionArn");
    // EventBridge publishes through a role of this stack rather than a topic policy open to the events
    // service: no other account's rule can use the topic, and the key needs no grant to the service.
    const alertRole = serviceRole(
      this,
      "ExecutionAlertRole",
      "events.amazonaws.com",
      "etcd-backup: EventBridge publishes execution alerts to the on-call topic",
    );
    props.onCall.grantPublish(alertRole);
    const message = events.RuleTargetInput.fromText(
      [
        `etcd-backup: execution ${events.EventField.fromPath("$.detail.name")} ended ${events.EventField.fromPath("$.detail.status")}.`,
        `State machine: ${events.EventField.fromPath("$.detail.stateMachineArn")}`,
        `Execution: ${executionArn}`,
        `Console: https://${stack.region}.console.${stack.urlSuffix}/states/home?region=${stack.region}#/v2/executions/details/${executionArn}`,
        "A failure the workflow caught was also reported with its details; TIMED_OUT and ABORTED runs were not, and may hold the cluster's lease until it expires.",
      ].join("\n"),
    );
    // A target of our own rather than targets.SnsTopic, whose grant adds kms:GenerateDataKey* to the role:
    // the role holds exactly the statements of OnCallTopic.grantPublish.
    this.failedExecutionRule.addTarget({
      bind: () => ({ arn: props.onCall.topic.topicArn, role: alertRole, input: message }),
    });

    const checkedByAge: { target: Target; intervalSeconds: number }[] = [];
    for (const target of props.targets) {
      const interval = longestScheduleGapSeconds(target.schedule);
      if (!Number.isFinite(interval)) {
        Annotations.of(this).addWarningV2(
          "etcd-backup:freshness-alarm-not-created",
          `target ${target.name}: its schedule (${target.schedule}) names years, so it stops firing; no freshness alarm is created for it.`,
        );
        continue;
      }
      if (interval + longestRunSeconds > maxAlarmWindowSeconds) {
        checkedByAge.push({ target, intervalSeconds: interval });
        continue;
      }
      const window = alarmWindowFor(2 * interval);
      if (window.capped) {
        Annotations.of(this).addInfo(
          `target ${target.name}: the freshness alarm looks back 7 days, CloudWatch's limit, rather than twice the ${target.schedule} interval.`,
        );
      }
      const alarm = clusterAlarm(this, `NoVerifiedSnapshot-${target.name}`, {
        cluster: target.name,
        metricName: MetricNames.snapshotVerified,
        statistic: cloudwatch.Stats.SUM,
        period: Duration.seconds(window.periodSeconds),
        nameSuffix: "no-verified-snapshot",
        onCall: props.onCall,
        alarmDescription: `etcd-backup: no snapshot of cluster ${target.name} was verified in ${describeSeconds(window.periodSeconds * window.evaluationPeriods)} (schedule ${target.schedule}).`,
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: window.evaluationPeriods,
        datapointsToAlarm: window.evaluationPeriods,
        // No data point at all is exactly the case to catch.
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
      this.freshnessAlarms[target.name] = alarm;
    }
    for (const target of props.targets) {
      this.divergenceAlarms[target.name] = clusterAlarm(this, `MembersDiverged-${target.name}`, {
        cluster: target.name,
        metricName: MetricNames.membersHashMismatched,
        statistic: cloudwatch.Stats.MAXIMUM,
        period: Duration.hours(1),
        nameSuffix: "etcd-members-diverged",
        onCall: props.onCall,
        alarmDescription: `etcd-backup: at the last verified snapshot of cluster ${target.name}, some etcd members held other data at its revision than the snapshot (memberHash on its catalogue row): compare them (etcdctl endpoint hashkv --cluster --rev <revision>) and replace the diverged member.`,
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        // Published at each verification: between backups the last verdict stands.
        treatMissingData: cloudwatch.TreatMissingData.IGNORE,
      });
    }
    for (const target of props.targets) {
      // exec runs etcdctl with the pod's own certificates, which the product never holds.
      if (!target.etcd.tlsSecretArn || target.etcd.source === "exec") continue;
      this.certificateAlarms[target.name] = clusterAlarm(this, `ClientCertificateExpiring-${target.name}`, {
        cluster: target.name,
        metricName: MetricNames.clientCertificateDaysLeft,
        statistic: cloudwatch.Stats.MINIMUM,
        period: Duration.hours(1),
        nameSuffix: "etcd-client-certificate-expiring",
        onCall: props.onCall,
        alarmDescription: `etcd-backup: the etcd client certificate of cluster ${target.name} expires within ${expiryWarningDays} days: renew it (kubeadm certs renew etcd-healthcheck-client, or your CA) and update its secret, or backups will fail.`,
        threshold: expiryWarningDays,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 1,
        // Published at each backup only: between backups the last verdict stands (a missing backup is the
        // freshness alarm's business).
        treatMissingData: cloudwatch.TreatMissingData.IGNORE,
      });
    }
    if (checkedByAge.length > 0) {
      this.ageCheck = new SnapshotAgeCheck(this, "SnapshotAgeCheck", {
        targets: checkedByAge,
        onCall: props.onCall,
        ...props.ageCheck,
      });
      Object.assign(this.freshnessAlarms, this.ageCheck.alarms);
    }
    if (props.replication) {
      const { source, destination } = props.replication;
      this.replicationAlarm = new cloudwatch.Alarm(this, "ReplicationFailed", {
        alarmName: `${stack.stackName}-replication-failed`,
        alarmDescription: `etcd-backup: S3 failed to replicate snapshot objects from ${source.bucketName} to ${destination.bucketName} in the last hour, so the replica lacks them: check the replication role's access to the replica bucket and its KMS key (S3 console, Replication metrics; docs/operations.md).`,
        metric: new cloudwatch.Metric({
          namespace: "AWS/S3",
          metricName: "OperationsFailedReplication",
          dimensionsMap: {
            SourceBucket: source.bucketName,
            DestinationBucket: destination.bucketName,
            RuleId: replicationRuleId,
          },
          statistic: "Sum",
          period: Duration.hours(1),
        }),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        // S3 publishes the metric only when there is replication to report.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      this.replicationAlarm.addAlarmAction(new cloudwatchActions.SnsAction(props.onCall.topic));
      this.replicationAlarm.addOkAction(new cloudwatchActions.SnsAction(props.onCall.topic));
    }
  }
}
