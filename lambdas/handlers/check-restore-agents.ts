// The Check_* state(s) of statemachine/restore.asl.json.
import { restorePhaseInput } from "../core/restore/restore-payloads.js";
import { checkRestoreAgents } from "../core/restore/restore-plans-step.js";
import { restoreStepHandler } from "./shared/restore-step-handler.js";

export const handler = restoreStepHandler("check-restore-agents", restorePhaseInput, (dependencies, event) =>
  checkRestoreAgents(dependencies, event.input, event.restoreId, event.phase, event.deadline),
);
