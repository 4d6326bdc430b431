// The ResolveTarget state of statemachine/backup.asl.json.
import { resolveTarget } from "../core/backup/resolve-target-step.js";
import { resolveTargetInput } from "../core/backup/step-payloads.js";
import { loadKubeConfig } from "./shared/kube-config-from-environment.js";
import { backupStepHandler } from "./shared/step-handler.js";

export const handler = backupStepHandler(
  "ResolveTarget",
  resolveTargetInput,
  (dependencies, event) => resolveTarget(dependencies, event.input),
  { loadKubeConfig },
);
