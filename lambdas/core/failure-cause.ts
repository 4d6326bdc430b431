// What a Step Functions failure's Cause says, in words: the notices and `etcd-backup status` show it.

/**
 * A Lambda error's Cause is JSON with `errorMessage`; a nested execution's (startExecution.sync) is the
 * whole execution description, whose error and ARN say enough (its own notice said the rest); anything
 * else is shown as it is.
 */
export function readableCause(cause: string | undefined): string {
  if (!cause) return "no cause reported";
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: string; Error?: string; ExecutionArn?: string };
    if (parsed.errorMessage) return parsed.errorMessage;
    if (parsed.ExecutionArn) return `${parsed.Error ?? "failed"} (execution ${parsed.ExecutionArn})`;
    return cause;
  } catch {
    return cause;
  }
}
