import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readLocalExecution, recordLocalExecution } from "../../cli/local/local-executions.js";

let workDir: string;

beforeEach(async () => {
  workDir = await mkdtemp(join(tmpdir(), "local-executions-"));
});

afterEach(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe("the local execution record", () => {
  it("says where a running execution is, then how it ended", async () => {
    const journal = recordLocalExecution(workDir, {
      executionArn: "arn:x",
      name: "restore-local-1",
      startedAt: "t0",
    });
    expect(await readLocalExecution(workDir, "restore-local-1")).toMatchObject({ status: "RUNNING" });
    journal.entered("RequestApproval");
    expect(await readLocalExecution(workDir, "restore-local-1")).toMatchObject({
      status: "RUNNING",
      currentState: "RequestApproval",
    });
    journal.finished({
      executionArn: "arn:x",
      name: "restore-local-1",
      status: "SUCCEEDED",
      stoppedAt: "t1",
    });
    expect(await readLocalExecution(workDir, "restore-local-1")).toEqual({
      executionArn: "arn:x",
      name: "restore-local-1",
      status: "SUCCEEDED",
      stoppedAt: "t1",
    });
  });

  it("reports ABORTED when the process that ran it ended while it was running", async () => {
    recordLocalExecution(workDir, { executionArn: "arn:x", name: "backup-local-2", startedAt: "t0" });
    const file = join(workDir, "executions", "backup-local-2.json");
    // A pid no process has: the largest Linux allows is 2^22.
    const record = { ...JSON.parse(await readFile(file, "utf8")), pid: 4_194_304 + 1 };
    await writeFile(file, JSON.stringify(record));
    expect(await readLocalExecution(workDir, "backup-local-2")).toMatchObject({
      status: "ABORTED",
      failure: { error: expect.stringContaining("ended") },
    });
  });

  it("names an execution the local stack never ran", async () => {
    await expect(readLocalExecution(workDir, "restore-local-9")).rejects.toThrow(
      'the local stack ran no execution named "restore-local-9"',
    );
  });
});
