// The restore state machine's Lambda substitutions and the handler modules they run, for local runs.
import { backupFunctions } from "./backup-functions.js";
import type { LocalHandler } from "./local-state-machine.js";

const load = (module: Promise<{ handler: unknown }>) => async () => (await module).handler as LocalHandler;

export const restoreFunctions: Record<string, () => Promise<LocalHandler>> = {
  ValidateRestoreFunctionArn: () => load(import("../../lambdas/handlers/validate-restore.js"))(),
  RequestApprovalFunctionArn: () => load(import("../../lambdas/handlers/request-approval.js"))(),
  AcquireLeaseFunctionArn: backupFunctions.AcquireLeaseFunctionArn as () => Promise<LocalHandler>,
  ReleaseLeaseFunctionArn: backupFunctions.ReleaseLeaseFunctionArn as () => Promise<LocalHandler>,
  WriteRestorePlansFunctionArn: () => load(import("../../lambdas/handlers/write-restore-plans.js"))(),
  StartAgentPodsFunctionArn: () => load(import("../../lambdas/handlers/start-agent-pods.js"))(),
  RemoveAgentPodsFunctionArn: () => load(import("../../lambdas/handlers/remove-agent-pods.js"))(),
  SetRestorePhaseFunctionArn: () => load(import("../../lambdas/handlers/set-restore-phase.js"))(),
  CheckRestoreAgentsFunctionArn: () => load(import("../../lambdas/handlers/check-restore-agents.js"))(),
  CheckEtcdHealthFunctionArn: () => load(import("../../lambdas/handlers/check-etcd-health.js"))(),
  ComposeRestoreMessageFunctionArn: () => load(import("../../lambdas/handlers/compose-restore-message.js"))(),
};
