// Invoked by the freshness schedule of a target whose backups are more than a week apart (not a state).
import { reportNewestSnapshotAge, snapshotAgeInput } from "../core/backup/snapshot-age-step.js";
import { backupStepHandler } from "./shared/step-handler.js";

export const handler = backupStepHandler("ReportSnapshotAge", snapshotAgeInput, (dependencies, event) =>
  reportNewestSnapshotAge(dependencies, event.input.cluster),
);
