// The ComposeSuccess and NotifyRestoreFailed state(s) of statemachine/restore.asl.json.

import { composeRestoreMessage } from "../core/restore/compose-restore-message-step.js";
import { composeRestoreMessageInput } from "../core/restore/restore-payloads.js";
import { restoreStepHandler } from "./shared/restore-step-handler.js";

export const handler = restoreStepHandler(
  "compose-restore-message",
  composeRestoreMessageInput,
  (dependencies, event) =>
    composeRestoreMessage(
      dependencies,
      event.input,
      event.executionArn,
      event.outcome,
      event.state,
      event.executionStartedAt,
    ),
);
