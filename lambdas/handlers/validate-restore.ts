// The ValidateRestore state(s) of statemachine/restore.asl.json.
import { measureLocalFreeSpace } from "../core/restore/member-free-space.js";
import { validateRestoreInput } from "../core/restore/restore-payloads.js";
import { validateRestore } from "../core/restore/validate-restore-step.js";
import { findManagedInstances, measureFreeSpaceOnInstances } from "./shared/managed-instances.js";
import { restoreStepHandler } from "./shared/restore-step-handler.js";

export const handler = restoreStepHandler("validate-restore", validateRestoreInput, (dependencies, event) =>
  validateRestore(dependencies, event.input, event.executionArn, {
    findManagedInstances,
    measureFreeSpace: { ssm: measureFreeSpaceOnInstances, local: measureLocalFreeSpace },
  }),
);
