// Executes statemachine/backup.asl.json with aws-local-stepfunctions and the real handlers, against a
// real etcd, s3rver and dynalite.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEtcdWriter } from "../support/etcd-writer.js";
import { type LocalBackupStack, startLocalBackupStack } from "../support/local-backup-stack.js";
import { onCallTopicArn, runBackupMachine } from "../support/run-backup-machine.js";

let stack: LocalBackupStack;

beforeAll(async () => {
  stack = await startLocalBackupStack({ members: 3 });
  await createEtcdWriter(stack.etcd).putMany(
    Array.from({ length: 200 }, (_, index) => [`/registry/configmaps/default/cm-${index}`, `data-${index}`]),
  );
});

afterAll(async () => {
  await stack?.stop();
});

describe("the backup state machine, executed locally", () => {
  it("takes, verifies and catalogues a snapshot, prunes, and releases the lease", async () => {
    const run = await runBackupMachine({ cluster: "local", scheduledTime: "2026-11-24T10:00:00Z" });
    expect(run.error).toBeUndefined();
    expect(run.status).toBe("SUCCEEDED");
    expect(run.entered).toEqual([
      "AcquireLease",
      "IsDuplicateTick",
      "ResolveTarget",
      "TakeSnapshot",
      "VerifySnapshot",
      "PruneSnapshots",
      "ReleaseLease",
      "Done",
    ]);
    expect(run.published).toEqual([]);
    const latest = await stack.catalogue.findLatestVerified("local");
    expect(latest).toMatchObject({ status: "VERIFIED", liveKeyCount: 200, executionArn: run.executionArn });
    // The member the snapshot came from, then its two peers, answered the snapshot's own HashKV.
    expect(latest?.memberHash).toMatchObject({ outcome: "matched", revision: latest?.revision });
    expect(latest?.memberHash?.outcome === "matched" && latest.memberHash.agreeing).toEqual(
      expect.arrayContaining(stack.etcd.endpoints),
    );
    expect(latest?.memberHash).not.toHaveProperty("diverged");
    // The prune step wrote on the row what keeps it: the only snapshot is every tier's newest.
    expect(latest?.retentionTier?.split(",")).toEqual(
      expect.arrayContaining(["hourly", "daily", "weekly", "monthly", "newest-verified"]),
    );
    expect(await stack.s3.listKeys(`${stack.prefix}/local/`)).toEqual([latest?.key]);
    expect((await stack.leases.getLease("local"))?.owner).toBeUndefined();
  });

  it("does nothing for a second start of the same schedule tick", async () => {
    const before = await stack.catalogue.listSnapshots("local");
    const run = await runBackupMachine({ cluster: "local", scheduledTime: "2026-11-24T10:00:00Z" });
    expect(run.status).toBe("SUCCEEDED");
    expect(run.entered).toEqual(["AcquireLease", "IsDuplicateTick", "DuplicateTick"]);
    expect((await stack.catalogue.listSnapshots("local")).snapshots).toHaveLength(before.snapshots.length);
  });

  it("retries an unreachable etcd, then tells on-call which step failed and why, and releases the lease", async () => {
    const run = await runBackupMachine({ cluster: "unreachable", scheduledTime: "2026-11-24T10:00:00Z" });
    expect(run.status).toBe("FAILED");
    expect(run.error?.name).toBe("BackupFailed");
    expect(
      run.states.filter((event) => event.type === "retried" && event.state === "ResolveTarget"),
    ).toHaveLength(3);
    expect(run.entered.slice(-3)).toEqual(["MarkFailed", "NotifyOnCall", "BackupFailed"]);
    expect(run.published).toHaveLength(1);
    const [message] = run.published;
    expect(message?.topicArn).toBe(onCallTopicArn);
    expect(message?.subject).toBe("etcd-backup: backup of unreachable failed at ResolveTarget");
    expect(message?.message).toContain("EtcdUnavailableError");
    expect(message?.message).toContain("127.0.0.1:1");
    expect(message?.message).toContain(
      `https://local.console.aws.amazon.com/states/home?region=local#/v2/executions/details/${run.executionArn}`,
    );
    expect(message?.message).toContain("lease released");
    expect((await stack.leases.getLease("unreachable"))?.owner).toBeUndefined();
  });

  it("marks the row FAILED and leaves no object or open upload when S3 fails during the snapshot", async () => {
    stack.s3.failUploadPartAfter(0);
    const run = await runBackupMachine({ cluster: "local", scheduledTime: "2026-11-24T11:00:00Z" }).finally(
      () => stack.s3.failUploadPartAfter(Number.POSITIVE_INFINITY),
    );
    expect(run.status).toBe("FAILED");
    expect(
      run.states.filter((event) => event.type === "retried" && event.state === "TakeSnapshot"),
    ).toHaveLength(3);
    expect(run.published[0]?.subject).toBe("etcd-backup: backup of local failed at TakeSnapshot");
    expect(run.published[0]?.message).toContain("StorageUnavailableError");
    const failed = (await stack.catalogue.listSnapshots("local", { status: "FAILED" })).snapshots.filter(
      (snapshot) => snapshot.executionArn === run.executionArn,
    );
    expect(failed).toHaveLength(1);
    const [row] = failed;
    expect(row?.failure?.errorName).toBe("StorageUnavailableError");
    expect(await stack.s3.listOpenMultipartUploads()).toEqual([]);
    // Whatever other tests stored, nothing of this snapshot may remain.
    const keys = await stack.s3.listKeys(`${stack.prefix}/`);
    expect(keys).not.toContain(row?.key);
    expect(keys.filter((key) => key.includes(row?.snapshotId ?? "no snapshot id"))).toEqual([]);
  });

  it("rejects an execution input without a cluster with InvalidInputError, not a retry", async () => {
    const run = await runBackupMachine({ scheduledTime: "2026-11-24T12:00:00Z" });
    expect(run.status).toBe("FAILED");
    expect(run.states.filter((event) => event.type === "retried")).toEqual([]);
    expect(run.published[0]?.message).toContain("InvalidInputError");
  });
});
