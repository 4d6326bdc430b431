// The PruneSnapshots state of statemachine/backup.asl.json.
import { pruneSnapshots } from "../core/backup/prune-snapshots-step.js";
import { pruneSnapshotsInput } from "../core/backup/step-payloads.js";
import { backupStepHandler } from "./shared/step-handler.js";

export const handler = backupStepHandler("PruneSnapshots", pruneSnapshotsInput, (dependencies, event) =>
  pruneSnapshots(dependencies, event.input),
);
