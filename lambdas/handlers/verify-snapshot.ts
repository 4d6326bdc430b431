// The VerifySnapshot state of statemachine/backup.asl.json.

import { verifySnapshotInput } from "../core/backup/step-payloads.js";
import { verifySnapshot } from "../core/backup/verify-snapshot-step.js";
import { loadKubeConfig } from "./shared/kube-config-from-environment.js";
import { backupStepHandler } from "./shared/step-handler.js";

// The members are asked for their HashKV the way the snapshot step reached its source: through the
// Kubernetes API for eks and kubeconfig targets.
export const handler = backupStepHandler(
  "VerifySnapshot",
  verifySnapshotInput,
  (dependencies, event) => verifySnapshot(dependencies, event.input, event.snapshot, event.target),
  { loadKubeConfig },
);
