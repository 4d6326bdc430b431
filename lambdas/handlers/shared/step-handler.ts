// Wraps one backup step as a Lambda handler: checks the input with the step's schema, adds the cluster
// and execution to every log line and metric, and lets named errors through for Retry/Catch.
import { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import { Tracer } from "@aws-lambda-powertools/tracer";
import { captureLambdaHandler } from "@aws-lambda-powertools/tracer/middleware";
import middy from "@middy/core";
import type { Context } from "aws-lambda";
import type * as z from "zod";
import type {
  BackupDependencies,
  MetricUnitName,
  StepReporter,
} from "../../core/backup/backup-dependencies.js";
import { parseStepInput } from "../../core/backup/step-payloads.js";
import { MetricDimensions, MetricNamespace, MetricServiceName } from "../../core/metric-names.js";
import { createBackupDependencies } from "./backup-dependencies-from-environment.js";
import { readEnvironment } from "./environment.js";
import { installLazySourceMaps } from "./lazy-source-maps.js";
import { reportStepProgress } from "./step-progress.js";

installLazySourceMaps();

const logger = new Logger({ serviceName: MetricServiceName });
/** Local runs (the demo, tests) switch metrics off; Powertools would still warn of empty ones. */
const metricsDisabled = process.env.POWERTOOLS_METRICS_DISABLED === "true";
const metrics = new Metrics({
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? MetricNamespace,
  serviceName: MetricServiceName,
  ...(metricsDisabled ? { logger: logger } : {}),
});
const tracer = new Tracer({ serviceName: MetricServiceName });

const units = {
  Count: MetricUnit.Count,
  Bytes: MetricUnit.Bytes,
  Seconds: MetricUnit.Seconds,
  Milliseconds: MetricUnit.Milliseconds,
  "Bytes/Second": MetricUnit.BytesPerSecond,
} as const satisfies Record<MetricUnitName, (typeof MetricUnit)[keyof typeof MetricUnit]>;

const reporter: StepReporter = {
  info: (message, details) => logger.info(message, details ?? {}),
  warn: (message, details) => logger.warn(message, details ?? {}),
  metric: (name, unit, value) => metrics.addMetric(name, units[unit], value),
  progress: (activity, bytes, totalBytes) => reportStepProgress({ activity, bytes, totalBytes }),
};

let backup: BackupDependencies | undefined;

/** Built at the first invocation, not at import, so that a bad environment fails the step with its message. */
export function backupDependencies(): BackupDependencies {
  backup ??= createBackupDependencies(readEnvironment(), reporter);
  return backup;
}

/** What a step adds to the shared dependencies: the Kubernetes access, for the steps that reach the API. */
export type BackupDependencyExtras = Pick<BackupDependencies, "loadKubeConfig">;

export function backupStepHandler<Schema extends z.ZodType, Result>(
  step: string,
  schema: Schema,
  run: (dependencies: BackupDependencies, input: z.infer<Schema>) => Promise<Result>,
  extras: BackupDependencyExtras = {},
) {
  // Kept per handler: local runs load every handler in one process, sharing `backup`.
  let dependencies: BackupDependencies | undefined;
  return stepHandler(step, schema, () => {
    dependencies ??= { ...backupDependencies(), ...extras };
    return run.bind(undefined, dependencies);
  });
}

export function stepHandler<Schema extends z.ZodType, Result>(
  step: string,
  schema: Schema,
  bind: () => (input: z.infer<Schema>) => Promise<Result>,
) {
  return middy(async (event: unknown, _context: Context): Promise<Result> => {
    const input = parseStepInput(schema, event, step);
    const cluster = (input as { input?: { cluster?: string } }).input?.cluster;
    logger.appendKeys({ step, cluster, executionArn: (input as { executionArn?: string }).executionArn });
    if (cluster) metrics.addDimension(MetricDimensions.cluster, cluster);
    return bind()(input);
  })
    .use(captureLambdaHandler(tracer))
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(logMetrics(metrics, { captureColdStartMetric: !metricsDisabled }));
}
