// Asks a person: publishes what will be restored and how to answer, keeps the task token in the
// catalogue under the execution's name, and returns; the state machine waits for the answer.
import type { RestoreDependencies } from "./restore-dependencies.js";
import type { RestoreInput } from "./restore-payloads.js";

export async function requestApproval(
  dependencies: RestoreDependencies,
  input: RestoreInput,
  executionArn: string,
  taskToken: string,
  summary: string,
  approvalTimeoutSeconds: number,
): Promise<{ executionName: string }> {
  const executionName = executionArn.split(":").pop() ?? executionArn;
  const now = dependencies.now();
  await dependencies.approvals.save({
    targetCluster: input.cluster,
    executionName,
    executionArn,
    taskToken,
    snapshotId: input.snapshotId,
    requestedAt: now.toISOString(),
    expiresAt: Math.ceil(now.getTime() / 1000) + approvalTimeoutSeconds,
  });
  const message = [
    summary,
    "",
    `Approve:  etcd-backup approve ${executionName}${dependencies.operatorCliFlags}`,
    `Reject:   etcd-backup reject ${executionName}${dependencies.operatorCliFlags} --reason "..."`,
    `Console:  open the execution, and send task success with output {"approved": true} (the token is in the catalogue table, item approval#${executionName}).`,
    `The request expires after ${Math.round(approvalTimeoutSeconds / 3600)} h; nothing changes until someone approves.`,
  ].join("\n");
  await dependencies.notifyApprovers(
    `etcd-backup: approve restore of ${input.cluster}?`.slice(0, 99),
    message,
  );
  dependencies.reporter.info("approval requested", { executionName, snapshotId: input.snapshotId });
  return { executionName };
}
