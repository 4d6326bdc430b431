import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { RestorePhases } from "../../lambdas/core/restore/restore-plan.js";

const run = promisify(execFile);
const cli = join(import.meta.dirname, "../../bin/etcd-backup.mjs");

describe("etcd-backup demo", () => {
  it("runs backup and restore end to end and reports every check as held, with exit code 0", async () => {
    const { stdout, stderr } = await run(process.execPath, [cli, "demo", "--keys", "300", "--json"], {
      maxBuffer: 16 * 1024 * 1024,
      timeout: 180_000,
    });
    expect(stderr).toBe("");
    const result = JSON.parse(stdout);
    expect(result.checks).toEqual({
      backupSucceeded: true,
      backupMatchesMembers: true,
      restoreSucceeded: true,
      keysBack: true,
      keysAfterSnapshotGone: true,
      revisionAsCatalogued: true,
      healthy: true,
    });
    expect(result.ok).toBe(true);
    expect(result.backup).toMatchObject({ liveKeyCount: 300, totalKey: expect.any(Number) });
    expect(result.backup.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(result.restore).toMatchObject({ keysRestored: 300, keysAfterSnapshotGone: true, healthy: true });
    // Each barrier phase timed, in the order the restore runs them.
    expect(Object.keys(result.restore.barrierPhasesMs)).toEqual(
      RestorePhases.filter((phase) => phase !== "rollback" && phase !== "abort"),
    );
    expect(Object.values(result.restore.barrierPhasesMs).every((ms) => Number(ms) > 0)).toBe(true);
    const restoreStates = result.states.filter((state: { machine: string }) => state.machine === "restore");
    expect(restoreStates.map((state: { state: string }) => state.state)).toEqual(
      expect.arrayContaining([
        "RequestApproval",
        "SafetySnapshot",
        "Phase_stop_apiserver",
        "Phase_stop",
        "Phase_restore",
        "CheckEtcdHealth",
        "Restored",
      ]),
    );
    // The backup state machine runs twice: the backup, and the restore's safety snapshot, told apart by `run`.
    const takeSnapshots = result.states
      .filter((state: { state: string }) => state.state === "TakeSnapshot")
      .map((state: { run: string; machine: string }) => [state.run, state.machine]);
    expect(takeSnapshots).toEqual([
      ["backup", "backup"],
      ["safety", "backup"],
    ]);
    expect(result.restore.safetySnapshotId).toMatch(/^\d{8}T\d{9}Z-[0-9a-f]{6}$/);
    expect(result.restore.safetySnapshotId).not.toBe(result.backup.snapshotId);
  }, 200_000);

  it("restores three members from one snapshot that all three agreed on, each healthy after, with exit code 0", async () => {
    const { stdout, stderr } = await run(
      process.execPath,
      [cli, "demo", "--members", "3", "--keys", "300", "--json"],
      { maxBuffer: 16 * 1024 * 1024, timeout: 180_000 },
    );
    expect(stderr).toBe("");
    const result = JSON.parse(stdout);
    expect(result.ok).toBe(true);
    expect(Object.entries(result.checks).filter(([, held]) => !held)).toEqual([]);
    expect(result.backup.memberHash).toMatchObject({ outcome: "matched" });
    expect(result.backup.memberHash.agreeing).toHaveLength(3);
    expect(result.restore).toMatchObject({
      status: "SUCCEEDED",
      keysRestored: 300,
      keysAfterSnapshotGone: true,
      healthy: true,
    });
  }, 200_000);

  it("writes progress to stderr and only the summary to stdout, the safety snapshot's states labelled safety/", async () => {
    const { stdout, stderr } = await run(process.execPath, [cli, "demo", "--keys", "50"], {
      maxBuffer: 16 * 1024 * 1024,
      timeout: 180_000,
    });
    expect(stderr).toContain("backup  ▶ TakeSnapshot");
    expect(stderr).toContain("safety  ▶ TakeSnapshot");
    expect(stderr).toContain("restore ▶ SafetySnapshot");
    expect(stdout).not.toContain("▶");
    expect(stdout.split("\n")[0]).toBe("backup");
    expect(stdout).toMatch(/^ {2}safety {5}\d{8}T\d{9}Z-[0-9a-f]{6} \(the state before the restore/m);
    expect(stdout).toMatch(/^slowest states: /m);
    expect(stdout.trim().split("\n").at(-1)).toBe("demo OK: every check held");
  }, 200_000);

  it("refuses --members other than 1 or 3 with exit code 2", async () => {
    await expect(run(process.execPath, [cli, "demo", "--members", "2"])).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining("--members must be 1 or 3"),
    });
  });
});
