// The RemoveAgentPods states of statemachine/restore.asl.json: the pod executor's clean-up, best effort.
import { removeAgentPods } from "../core/restore/agent-pods-step.js";
import { removeAgentPodsInput } from "../core/restore/restore-payloads.js";
import { loadKubeConfig } from "./shared/kube-config-from-environment.js";
import { restoreStepHandler } from "./shared/restore-step-handler.js";

export const handler = restoreStepHandler(
  "remove-agent-pods",
  removeAgentPodsInput,
  (dependencies, event) =>
    removeAgentPods(dependencies, event.input, event.restoreId, { describePods: event.describePods }),
  { loadKubeConfig },
);
