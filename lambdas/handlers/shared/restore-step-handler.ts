// Wraps one restore step as a Lambda handler (step-handler.ts), with the restore steps' dependencies;
// apart so that the backup steps' bundles carry neither SNS nor STS.
import type * as z from "zod";
import type { RestoreDependencies } from "../../core/restore/restore-dependencies.js";
import { readEnvironment } from "./environment.js";
import { createRestoreDependencies } from "./restore-dependencies-from-environment.js";
import { type BackupDependencyExtras, backupDependencies, stepHandler } from "./step-handler.js";

let restore: RestoreDependencies | undefined;

function restoreDependencies(): RestoreDependencies {
  restore ??= createRestoreDependencies(readEnvironment(), backupDependencies());
  return restore;
}

export function restoreStepHandler<Schema extends z.ZodType, Result>(
  step: string,
  schema: Schema,
  run: (dependencies: RestoreDependencies, input: z.infer<Schema>) => Promise<Result>,
  extras: BackupDependencyExtras = {},
) {
  // Kept per handler, as backupStepHandler keeps its own: merged once, not at every invocation.
  let dependencies: RestoreDependencies | undefined;
  return stepHandler(step, schema, () => {
    dependencies ??= { ...restoreDependencies(), ...extras };
    return run.bind(undefined, dependencies);
  });
}
