// The TakeSnapshot state of statemachine/backup.asl.json.

import { takeSnapshotInput } from "../core/backup/step-payloads.js";
import { takeSnapshot } from "../core/backup/take-snapshot-step.js";
import { loadKubeConfig } from "./shared/kube-config-from-environment.js";
import { backupStepHandler } from "./shared/step-handler.js";

export const handler = backupStepHandler(
  "TakeSnapshot",
  takeSnapshotInput,
  (dependencies, event) => takeSnapshot(dependencies, event.input, event.executionArn, event.target),
  { loadKubeConfig },
);
