// The AcquireLease state of statemachine/backup.asl.json.
import { acquireBackupLease } from "../core/backup/lease-steps.js";
import { leaseStepInput } from "../core/backup/step-payloads.js";
import { backupStepHandler } from "./shared/step-handler.js";

export const handler = backupStepHandler("AcquireLease", leaseStepInput, (dependencies, event) =>
  acquireBackupLease(dependencies, event.input, event.executionArn),
);
