// An alarm on one cluster's metric as the handlers publish it (Powertools adds the `service` dimension to
// every metric, the step handler adds `Cluster`), telling on-call when it fires and when it clears.
import { type Duration, Stack } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as cloudwatchActions from "aws-cdk-lib/aws-cloudwatch-actions";
import type { Construct } from "constructs";
import {
  MetricDimensions,
  type MetricName,
  MetricNamespace,
  MetricServiceName,
} from "../lambdas/core/metric-names.js";
import type { OnCallTopic } from "./on-call-topic.js";

export interface ClusterAlarmProps
  extends Omit<cloudwatch.AlarmProps, "metric" | "actionsEnabled" | "alarmName"> {
  cluster: string;
  metricName: MetricName;
  statistic: string;
  period: Duration;
  /** The alarm's name after `<stack>-<cluster>-`. */
  nameSuffix: string;
  onCall: OnCallTopic;
}

export function clusterAlarm(scope: Construct, id: string, props: ClusterAlarmProps): cloudwatch.Alarm {
  const { cluster, metricName, statistic, period, nameSuffix, onCall, ...alarm } = props;
  const created = new cloudwatch.Alarm(scope, id, {
    ...alarm,
    alarmName: `${Stack.of(scope).stackName}-${cluster}-${nameSuffix}`,
    metric: new cloudwatch.Metric({
      namespace: MetricNamespace,
      metricName,
      dimensionsMap: { [MetricDimensions.service]: MetricServiceName, [MetricDimensions.cluster]: cluster },
      statistic,
      period,
    }),
  });
  created.addAlarmAction(new cloudwatchActions.SnsAction(onCall.topic));
  created.addOkAction(new cloudwatchActions.SnsAction(onCall.topic));
  return created;
}
