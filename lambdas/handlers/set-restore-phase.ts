// The Phase_* state(s) of statemachine/restore.asl.json.
import { restorePhaseInput } from "../core/restore/restore-payloads.js";
import { setRestorePhase } from "../core/restore/restore-plans-step.js";
import { restoreStepHandler } from "./shared/restore-step-handler.js";

export const handler = restoreStepHandler("set-restore-phase", restorePhaseInput, (dependencies, event) =>
  setRestorePhase(dependencies, event.input, event.executionArn, event.restoreId, event.phase),
);
