// The first and last backup states: take the cluster's lease (recognising a duplicate start for the same
// schedule tick) and give it back. A restore's safety snapshot runs under the restore's lease: the
// restore is then the owner, and this execution neither takes nor releases it.
import type { BackupDependencies } from "./backup-dependencies.js";
import { backupLeaseSeconds, restoreLeaseSeconds } from "./backup-dependencies.js";
import type { ExecutionInput } from "./step-payloads.js";

export async function acquireBackupLease(
  dependencies: BackupDependencies,
  input: ExecutionInput,
  executionArn: string,
): Promise<{ acquired: boolean; duplicate: boolean; alreadyHeld: boolean; at: string }> {
  // A restore takes the lease right after approval: its notice counts the restore's own work from here.
  const now = dependencies.now();
  const result = await dependencies.leases.acquireLease({
    cluster: input.cluster,
    owner: input.leaseOwner ?? executionArn,
    ttlSeconds: input.snapshotId ? restoreLeaseSeconds : backupLeaseSeconds,
    now,
    scheduledTime: input.scheduledTime,
  });
  if (result.duplicate) {
    dependencies.reporter.info("duplicate start for a schedule tick already taken: nothing to do", {
      scheduledTime: input.scheduledTime,
      lastScheduledTime: result.lastScheduledTime,
    });
    return { acquired: false, duplicate: true, alreadyHeld: false, at: now.toISOString() };
  }
  return { acquired: true, duplicate: false, alreadyHeld: result.alreadyHeld, at: now.toISOString() };
}

export async function releaseBackupLease(
  dependencies: BackupDependencies,
  input: ExecutionInput,
  executionArn: string,
): Promise<{ released: boolean }> {
  if (input.leaseOwner && input.leaseOwner !== executionArn) return { released: false };
  const result = await dependencies.leases.releaseLease({ cluster: input.cluster, owner: executionArn });
  if (!result.released) {
    dependencies.reporter.warn("the lease was no longer held by this execution", { holder: result.holder });
  }
  return { released: result.released };
}
