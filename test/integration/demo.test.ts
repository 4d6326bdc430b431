import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const cli = join(import.meta.dirname, "../../bin/etcd-backup.mjs");

describe("etcd-backup demo --json", () => {
  it("runs backup and restore end to end and reports every check as held, with exit code 0", async () => {
    const { stdout, stderr } = await run(process.execPath, [cli, "demo", "--keys", "300", "--json"], {
      maxBuffer: 16 * 1024 * 1024,
      timeout: 180_000,
    });
    expect(stderr).toBe("");
    const result = JSON.parse(stdout);
    expect(result.checks).toEqual({
      backupSucceeded: true,
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
  }, 200_000);

  it("refuses --members other than 1 or 3 with exit code 2", async () => {
    await expect(run(process.execPath, [cli, "demo", "--members", "2"])).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining("--members must be 1 or 3"),
    });
  });
});
