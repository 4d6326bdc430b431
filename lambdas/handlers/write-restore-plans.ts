// The WritePlans state(s) of statemachine/restore.asl.json.
import { writeRestorePlansInput } from "../core/restore/restore-payloads.js";
import { writeRestorePlans } from "../core/restore/restore-plans-step.js";
import { restoreStepHandler } from "./shared/restore-step-handler.js";

export const handler = restoreStepHandler(
  "write-restore-plans",
  writeRestorePlansInput,
  (dependencies, event) =>
    writeRestorePlans(dependencies, event.input, event.executionArn, event.snapshot, event.members),
);
