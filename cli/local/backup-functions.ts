// The backup state machine's Lambda substitutions and the handler modules they run, for local runs.
import type { LocalHandler } from "./local-state-machine.js";

const load = (module: Promise<{ handler: unknown }>) => async () => (await module).handler as LocalHandler;

export const backupFunctions: Record<string, () => Promise<LocalHandler>> = {
  AcquireLeaseFunctionArn: () => load(import("../../lambdas/handlers/acquire-lease.js"))(),
  ResolveTargetFunctionArn: () => load(import("../../lambdas/handlers/resolve-target.js"))(),
  TakeSnapshotFunctionArn: () => load(import("../../lambdas/handlers/take-snapshot.js"))(),
  VerifySnapshotFunctionArn: () => load(import("../../lambdas/handlers/verify-snapshot.js"))(),
  PruneSnapshotsFunctionArn: () => load(import("../../lambdas/handlers/prune-snapshots.js"))(),
  ReleaseLeaseFunctionArn: () => load(import("../../lambdas/handlers/release-lease.js"))(),
  MarkFailedFunctionArn: () => load(import("../../lambdas/handlers/mark-failed.js"))(),
};
