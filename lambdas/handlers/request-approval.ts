// The RequestApproval state(s) of statemachine/restore.asl.json.

import { requestApproval } from "../core/restore/request-approval-step.js";
import { requestApprovalInput } from "../core/restore/restore-payloads.js";
import { restoreStepHandler } from "./shared/restore-step-handler.js";

export const handler = restoreStepHandler("request-approval", requestApprovalInput, (dependencies, event) =>
  requestApproval(
    dependencies,
    event.input,
    event.executionArn,
    event.taskToken,
    event.summary,
    event.approvalTimeoutSeconds,
  ),
);
