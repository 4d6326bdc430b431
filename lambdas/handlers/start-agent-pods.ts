// The StartAgentPods state of statemachine/restore.asl.json (the pod executor's StartAgents).
import { startAgentPods } from "../core/restore/agent-pods-step.js";
import { startAgentPodsInput } from "../core/restore/restore-payloads.js";
import { loadKubeConfig } from "./shared/kube-config-from-environment.js";
import { restoreStepHandler } from "./shared/restore-step-handler.js";

export const handler = restoreStepHandler(
  "start-agent-pods",
  startAgentPodsInput,
  (dependencies, event) => startAgentPods(dependencies, event.input, event.restoreId, event.agents),
  { loadKubeConfig },
);
