// The failure path: whatever state failed, mark the catalogue row FAILED, abort an upload left open,
// release the lease, and compose the message on-call receives through SNS.

import type * as z from "zod";
import { SnapshotStatus } from "../catalogue/snapshot-record.js";
import { describeError } from "../errors.js";
import { readableCause } from "../failure-cause.js";
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
  /** Each clean-up runs whatever happened to the others (a catalogue outage must not keep the lease). */
  const attempt = async (what: string, work: () => Promise<string | undefined>) => {
    try {
      const done = await work();
      if (done) cleanUp.push(done);
    } catch (cleanUpError) {
      cleanUp.push(`could not ${what}: ${describeError(cleanUpError)}`);
    }
  };
  const snapshotId = state.target?.snapshotId;
  const cluster = input.cluster ?? "(no cluster given)";
  if (snapshotId && input.cluster) {
    await attempt(`mark catalogue row ${snapshotId} FAILED (retention removes it as abandoned)`, async () => {
      const row = await dependencies.catalogue.getSnapshot(cluster, snapshotId);
      if (!row || row.status === SnapshotStatus.Verified || row.status === SnapshotStatus.Deleted) return;
      await dependencies.catalogue.recordFailed({
        cluster,
        snapshotId,
        errorName: error.name,
        message: error.message,
        failedAt: dependencies.now(),
      });
      return `catalogue row ${snapshotId} marked FAILED`;
    });
    await attempt("abort open uploads (the bucket's lifecycle rule aborts them after a day)", async () => {
      const key = snapshotObjectKey(dependencies.prefix, cluster, snapshotId);
      const aborted = await abortOpenUploads(dependencies.s3, dependencies.bucket, key);
      return aborted > 0 ? `${aborted} open multipart upload(s) aborted` : undefined;
    });
  }
  if (state.lease !== undefined && input.cluster) {
    const owned = { ...input, cluster: input.cluster };
    await attempt("release the lease (it expires by itself)", async () => {
      const { released } = await releaseBackupLease(dependencies, owned, executionArn);
      return released ? "lease released" : undefined;
    });
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
  return { name: failure?.Error ?? "UnknownError", message: readableCause(failure?.Cause) };
}

export function consoleLink(executionArn: string): string {
  const region = executionArn.split(":")[3] || "us-east-1";
  return `https://${region}.console.aws.amazon.com/states/home?region=${region}#/v2/executions/details/${executionArn}`;
}
