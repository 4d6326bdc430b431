// Locally, a restore's approval is an answer recorded on its pending approval in the local catalogue:
// aws-local-stepfunctions cannot pause on a task token (FACTS.md §8), so the waiting step polls for the
// answer that `etcd-backup approve|reject --local` (or the demo) records, and ends at the approval's own
// deadline as the state's TimeoutSecondsPath does on AWS.
import { type ApprovalTokens, approvalRejectedError } from "../../lambdas/core/catalogue/approval-tokens.js";

/** What SendTaskSuccess carries on AWS (see `etcd-backup approve`). */
export interface ApprovalOutput {
  approved: true;
  approvedBy: string;
}

/**
 * Polls the execution's pending approval until it is answered or its deadline passes; the record is
 * removed either way, as the CLI removes it on AWS once the task has its answer.
 */
export async function waitForApprovalAnswer(
  approvals: ApprovalTokens,
  executionName: string,
  options: { pollMs: number; now?: () => number },
): Promise<ApprovalOutput> {
  const now = options.now ?? Date.now;
  for (;;) {
    const pending = await approvals.find(executionName);
    if (pending.answer) {
      await approvals.remove(executionName);
      if (pending.answer.approved) return { approved: true, approvedBy: pending.answer.by };
      throw namedError(approvalRejectedError, `${pending.answer.by}: ${pending.answer.reason ?? "rejected"}`);
    }
    if (now() >= pending.expiresAt * 1000) {
      await approvals.remove(executionName);
      throw namedError(
        "States.Timeout",
        `nobody answered the approval request before ${new Date(pending.expiresAt * 1000).toISOString()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.pollMs));
  }
}

function namedError(name: string, message: string): Error {
  return Object.assign(new Error(message), { name });
}
