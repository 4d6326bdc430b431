// The CheckEtcdHealth state(s) of statemachine/restore.asl.json.

import { checkEtcdHealth } from "../core/restore/check-etcd-health-step.js";
import { checkEtcdHealthInput } from "../core/restore/restore-payloads.js";
import { restoreStepHandler } from "./shared/restore-step-handler.js";

export const handler = restoreStepHandler("check-etcd-health", checkEtcdHealthInput, (dependencies, event) =>
  checkEtcdHealth(dependencies, event.input, event.snapshot, event.members),
);
