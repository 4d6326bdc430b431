// The failure path: whatever state failed, mark the catalogue row FAILED, abort an upload left open,
// release the lease, and compose the message on-call receives through SNS.

import type * as z from "zod";
import { SnapshotStatus } from "../catalogue/snapshot-record.js";
import { describeError } from "../errors.js";
import { snapshotObjectKey } from "../snapshot/snapshot-naming.js";
import { abortOpenUploads } from "../store/abort-open-uploads.js";
import type { BackupDependencies } from "./backup-dependencies.js";
import { releaseBackupLease } from "./lease-steps.js";
import type { ExecutionInput, markFailedInput } from "./step-payloads.js";

type FailedState = z.infer<typeof markFailedInput>["state"];

/** The states in order, each with the key its result is stored under: the first missing one failed. */
const stateResults = [
  ["AcquireLease", "lease"],
  ["ResolveTarget", "target"],
  ["TakeSnapshot", "snapshot"],
  ["VerifySnapshot", "verification"],
  ["PruneSnapshots", "prune"],
  ["ReleaseLease", "release"],
] as const;

export function findFailedState(state: FailedState): string {
  return stateResults.find(([, resultKey]) => state[resultKey] === undefined)?.[0] ?? "unknown";
}

export async function markBackupFailed(
  dependencies: BackupDependencies,
  input: Partial<ExecutionInput>,
  executionArn: string,
  state: FailedState,
): Promise<{ subject: string; message: string; failedState: string }> {
  const failedState = findFailedState(state);
  const error = describeFailure(state.failure);
  const cleanUp: string[] = [];
  const snapshotId = state.target?.snapshotId;
  const cluster = input.cluster ?? "(no cluster given)";
  if (snapshotId && input.cluster) {
    const row = await dependencies.catalogue.getSnapshot(cluster, snapshotId);
    if (row && row.status !== SnapshotStatus.Verified && row.status !== SnapshotStatus.Deleted) {
      await dependencies.catalogue.recordFailed({
        cluster,
        snapshotId,
        errorName: error.name,
        message: error.message,
        failedAt: dependencies.now(),
      });
      cleanUp.push(`catalogue row ${snapshotId} marked FAILED`);
    }
    const aborted = await abortOpenUploads(
      dependencies.s3,
      dependencies.bucket,
      snapshotObjectKey(dependencies.prefix, cluster, snapshotId),
    ).catch((abortError: unknown) => {
      cleanUp.push(`could not abort open uploads: ${describeError(abortError)}`);
      return 0;
    });
    if (aborted > 0) cleanUp.push(`${aborted} open multipart upload(s) aborted`);
  }
  if (state.lease !== undefined && input.cluster) {
    const { released } = await releaseBackupLease(
      dependencies,
      { ...input, cluster: input.cluster },
      executionArn,
    );
    if (released) cleanUp.push("lease released");
  }
  const subject = `etcd-backup: backup of ${cluster} failed at ${failedState}`.slice(0, 99);
  const message = [
    `The backup of etcd cluster "${cluster}" failed.`,
    "",
    `Step:      ${failedState}`,
    `Error:     ${error.name}`,
    `Message:   ${error.message}`,
    snapshotId ? `Snapshot:  ${snapshotId}` : undefined,
    `Execution: ${executionArn}`,
    `Console:   ${consoleLink(executionArn)}`,
    `Clean-up:  ${cleanUp.length > 0 ? cleanUp.join("; ") : "nothing to clean up"}`,
  ]
    .filter((line) => line !== undefined)
    .join("\n");
  dependencies.reporter.metric("BackupFailed", "Count", 1);
  dependencies.reporter.warn("backup failed", { failedState, errorName: error.name });
  return { subject, message, failedState };
}

/** Step Functions gives the error type and a Cause that, for Lambda errors, is JSON with errorMessage. */
function describeFailure(failure: { Error?: string | undefined; Cause?: string | undefined } | undefined) {
  const name = failure?.Error ?? "UnknownError";
  let message = failure?.Cause ?? "no cause reported";
  try {
    const cause = JSON.parse(message) as { errorMessage?: string };
    if (cause.errorMessage) message = cause.errorMessage;
  } catch {
    // the cause is plain text
  }
  return { name, message };
}

export function consoleLink(executionArn: string): string {
  const region = executionArn.split(":")[3] || "us-east-1";
  return `https://${region}.console.aws.amazon.com/states/home?region=${region}#/v2/executions/details/${executionArn}`;
}
