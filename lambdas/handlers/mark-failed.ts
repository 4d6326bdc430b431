// The MarkFailed state of statemachine/backup.asl.json.
import { markBackupFailed } from "../core/backup/mark-failed-step.js";
import { markFailedInput } from "../core/backup/step-payloads.js";
import { backupStepHandler } from "./shared/step-handler.js";

export const handler = backupStepHandler("MarkFailed", markFailedInput, (dependencies, event) =>
  markBackupFailed(dependencies, event.input, event.executionArn, event.state),
);
