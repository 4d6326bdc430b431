// The VerifySnapshot state of statemachine/backup.asl.json.

import { verifySnapshotInput } from "../core/backup/step-payloads.js";
import { verifySnapshot } from "../core/backup/verify-snapshot-step.js";
import { backupStepHandler } from "./shared/step-handler.js";

export const handler = backupStepHandler("VerifySnapshot", verifySnapshotInput, (dependencies, event) =>
  verifySnapshot(dependencies, event.input, event.snapshot, event.target),
);
