// The ReleaseLease state of statemachine/backup.asl.json.
import { releaseBackupLease } from "../core/backup/lease-steps.js";
import { leaseStepInput } from "../core/backup/step-payloads.js";
import { backupStepHandler } from "./shared/step-handler.js";

export const handler = backupStepHandler("ReleaseLease", leaseStepInput, (dependencies, event) =>
  releaseBackupLease(dependencies, event.input, event.executionArn),
);
