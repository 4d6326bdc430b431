// What on-call reads when a restore fails after the nodes were touched: above all, whether the rollback
// finished, since the runbook's manual rollback is for "rollback incomplete" only.
import { describe, expect, it } from "vitest";
import { silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { composeRestoreMessage } from "../../lambdas/core/restore/compose-restore-message-step.js";
import type { RestoreDependencies } from "../../lambdas/core/restore/restore-dependencies.js";

const executionArn = "arn:aws:states:eu-west-1:111122223333:execution:restore:r-1";
const input = { cluster: "prod-eu", snapshotId: "20261125T010000000Z-000001" };
const phaseFailure = {
  Error: "RestoreAgentFailedError",
  Cause: JSON.stringify({ errorMessage: "cp-2: etcd did not answer healthy" }),
};

function fakeDependencies() {
  const released: string[] = [];
  const dependencies = {
    operatorCliFlags: "",
    reporter: silentReporter,
    leases: {
      releaseLease: async ({ owner }: { owner: string }) => {
        released.push(owner);
        return { released: true };
      },
    },
  } as unknown as RestoreDependencies;
  return { dependencies, released };
}

describe("composeRestoreMessage after a failure on the nodes", () => {
  it("says rolled back and releases the lease when every agent rolled back", async () => {
    const { dependencies, released } = fakeDependencies();
    const { subject, message } = await composeRestoreMessage(dependencies, input, executionArn, "failed", {
      lease: {},
      failure: phaseFailure,
      rollbackAgents: { state: "done", summary: "cp-1, cp-2: rolled back" },
    });
    expect(subject).toBe("etcd-backup: restore of prod-eu FAILED, rolled back");
    expect(message).toContain(
      "Rollback:  old data dirs swapped back and etcd restarted — cp-1, cp-2: rolled back",
    );
    expect(message).toContain("Lease:     lease released");
    expect(released).toEqual([executionArn]);
  });

  it("says rollback incomplete, keeps the phase's error and the lease, when the rollback could not be started", async () => {
    const { dependencies, released } = fakeDependencies();
    const { subject, message } = await composeRestoreMessage(dependencies, input, executionArn, "failed", {
      lease: {},
      failure: phaseFailure,
      rollbackFailure: {
        Error: "StorageUnavailableError",
        Cause: JSON.stringify({ errorMessage: "writing the rollback plans failed: SlowDown" }),
      },
    });
    expect(subject).toBe("etcd-backup: restore of prod-eu FAILED, rollback incomplete");
    expect(message).toContain("Error:     RestoreAgentFailedError: cp-2: etcd did not answer healthy");
    expect(message).toContain(
      "Rollback:  INCOMPLETE — it could not be driven (StorageUnavailableError: writing the rollback plans failed: SlowDown): do the manual rollback (docs/restore.md) on every member",
    );
    expect(message).toMatch(
      /Lease: {5}kept, so that no backup runs .* lapses by itself 4 h 15 min after the restore's last phase/,
    );
    expect(released).toEqual([]);
  });

  it("keeps the lease when an agent's rollback failed too", async () => {
    const { dependencies, released } = fakeDependencies();
    const { subject } = await composeRestoreMessage(dependencies, input, executionArn, "failed", {
      lease: {},
      failure: phaseFailure,
      rollbackAgents: { state: "failed", summary: "cp-2: etcd still accepts connections" },
    });
    expect(subject).toBe("etcd-backup: restore of prod-eu FAILED, rollback incomplete");
    expect(released).toEqual([]);
  });
});

describe("composeRestoreMessage after a restore that succeeded", () => {
  it("says when the lease could not be released, and when backups resume", async () => {
    const { dependencies } = fakeDependencies();
    const { subject, message } = await composeRestoreMessage(dependencies, input, executionArn, "succeeded", {
      lease: {},
      releaseFailure: {
        Error: "CatalogueUnavailableError",
        Cause: JSON.stringify({ errorMessage: "UpdateItem throttled" }),
      },
    });
    expect(subject).toBe("etcd-backup: restore of prod-eu succeeded");
    expect(message).toContain(
      "Lease:     could not be released (CatalogueUnavailableError: UpdateItem throttled); scheduled backups resume when it lapses, 4 h 15 min after the restore's last phase",
    );
  });
});
