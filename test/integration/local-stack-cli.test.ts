// `etcd-backup local up` and the commands that take --local, as an operator runs them in three terminals:
// the stack in one, a restore waiting for approval in another, the approval in a third.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCodes } from "../../cli/exit-codes.js";
import { createEtcdWriter } from "../../cli/local/etcd-writer.js";
import type { LocalSession } from "../../cli/local/local-session.js";
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import { isHealthy } from "../support/static-pod-etcd.js";

const cli = join(import.meta.dirname, "../../bin/etcd-backup.mjs");

let dir: string;
let environment: NodeJS.ProcessEnv;
let up: Running;
let session: LocalSession & { sessionFile: string };

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

function start(args: string[]): Running {
  const child = spawn(process.execPath, [cli, ...args], { env: environment });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk) => {
    stdout += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exit };
}

async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: environment }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function until<T>(probe: () => T | undefined, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function registryKeys(): Promise<number> {
  const client = createEtcdClient({ endpoint: session.etcdEndpoints[0] as string });
  try {
    return (await client.countKeys("/registry/")).count;
  } finally {
    client.close();
  }
}

/** Starts a restore on the local stack and waits until it asks for approval. */
async function restoreWaitingForApproval(snapshotId: string) {
  const restore = start([
    "restore",
    "--local",
    "--cluster",
    "local",
    "--snapshot-id",
    snapshotId,
    "--allow-without-revision-bump",
  ]);
  const execution = await until(
    () => /waiting for approval: etcd-backup approve (\S+) --local/.exec(restore.stderr())?.[1],
    "the approval request",
  );
  return { restore, execution };
}

/**
 * Starts a restore, and once it asks for approval, answers it as a person would from another terminal;
 * a third terminal follows it (`status --wait`) from the answer on.
 */
async function restoreAnswered(snapshotId: string, answer: string[]) {
  const { restore, execution } = await restoreWaitingForApproval(snapshotId);
  // From another terminal, the waiting execution is seen where it waits.
  const waiting = await run(["status", execution, "--local"]);
  const answered = await run([...answer, execution, "--local"]);
  const follower = start(["status", execution, "--local", "--wait", "--poll-seconds", "0.2"]);
  const code = await restore.exit;
  await follower.exit;
  const after = await run(["status", execution, "--local", "--wait", "--json"]);
  return {
    execution,
    waiting,
    answered,
    code,
    stdout: restore.stdout(),
    stderr: restore.stderr(),
    followed: follower.stderr(),
    after: { code: after.code, status: JSON.parse(after.stdout || "{}") },
  };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "local-stack-cli-"));
  environment = { ...process.env, ETCD_BACKUP_LOCAL_SESSION: join(dir, "session.json") };
  up = start(["local", "up", "--keys", "40", "--json"]);
  // Printed once everything is up; read whole, however the output arrives in chunks.
  session = await until(() => {
    if (up.child.exitCode !== null) throw new Error(`local up exited: ${up.stderr()}`);
    try {
      return JSON.parse(up.stdout());
    } catch {
      return undefined;
    }
  }, "local up");
}, 90_000);

afterAll(async () => {
  if (up?.child.exitCode === null) {
    up.child.kill("SIGINT");
    await up.exit;
  }
  await rm(dir, { recursive: true, force: true });
});

describe("etcd-backup local up, and the commands given --local", () => {
  it("runs the backup workflow on the local stack and lists its verified snapshot", async () => {
    expect(session.sessionFile).toBe(join(dir, "session.json"));
    expect(await registryKeys()).toBe(40);
    const backup = await run(["backup", "--local", "--cluster", "local", "--json"]);
    expect(backup.code, backup.stderr).toBe(0);
    expect(JSON.parse(backup.stdout)).toMatchObject({ status: "SUCCEEDED" });
    expect(backup.stderr).toContain("backup ▶ VerifySnapshot");
    const listed = await run(["list", "--local", "--cluster", "local", "--json"]);
    const rows = JSON.parse(listed.stdout).snapshots;
    expect(rows).toEqual([
      expect.objectContaining({ status: "VERIFIED", tags: ["on-demand"], liveKeyCount: 40 }),
    ]);
    // The stored object proves sound from another process too, and retention keeps the only snapshot.
    const verified = await run([
      "verify",
      `s3://${rows[0].bucket}/${rows[0].key}`,
      "--version-id",
      rows[0].versionId,
      "--local",
      "--json",
    ]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ sha256: rows[0].sha256, liveKeyCount: 40 });
    const pruned = await run(["prune", "--dry-run", "--local", "--cluster", "local", "--json"]);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(JSON.parse(pruned.stdout)).toMatchObject({
      delete: [],
      keep: [expect.objectContaining({ snapshotId: rows[0].snapshotId })],
    });
  }, 60_000);

  it("ends a restore rejected from another process with nothing changed, and exits 8 (stopped)", async () => {
    const listed = JSON.parse((await run(["list", "--local", "--cluster", "local", "--json"])).stdout);
    const snapshotId = listed.snapshots[0].snapshotId as string;
    await createEtcdWriter({ endpoints: session.etcdEndpoints }).put("/registry/pods/default/late", "after");
    const rejected = await restoreAnswered(snapshotId, ["reject", "--reason", "wrong snapshot"]);
    expect(rejected.answered.code, rejected.answered.stderr).toBe(0);
    expect(rejected.answered.stdout).toContain(`rejected the restore of local from ${snapshotId}`);
    expect(rejected.code).toBe(ExitCodes.stopped);
    expect(rejected.stdout).toMatch(/FAILED\n(.|\n)*failed at RequestApproval: RestoreRejected/);
    expect(rejected.stderr).toContain("wrong snapshot");
    expect(rejected.waiting.stdout).toMatch(/: RUNNING\n(.|\n)*now at {3}RequestApproval/);
    expect(rejected.after.code).toBe(rejected.code);
    expect(rejected.after.status).toMatchObject({
      status: "FAILED",
      failure: { state: "RequestApproval", error: "RestoreRejected" },
    });
    // The ARN that `show` and --json print names it as well as its name does.
    const byArn = await run(["status", rejected.after.status.executionArn, "--local"]);
    expect(byArn.stdout).toContain(`${rejected.execution}: FAILED`);
    expect(await registryKeys()).toBe(41);
    // The answer was consumed: the execution no longer waits.
    const late = await run(["approve", rejected.execution, "--local"]);
    expect(late.code).toBe(6);
    expect(late.stderr).toContain("no restore is waiting for approval");
  }, 60_000);

  it("refuses to approve a restore whose process was stopped while it waited (Ctrl-C)", async () => {
    const listed = JSON.parse((await run(["list", "--local", "--cluster", "local", "--json"])).stdout);
    const snapshotId = listed.snapshots[0].snapshotId as string;
    const { restore, execution } = await restoreWaitingForApproval(snapshotId);
    restore.child.kill("SIGKILL");
    await restore.exit;
    const status = await run(["status", execution, "--local"]);
    expect(status.stdout).toContain(`${execution}: ABORTED`);
    expect(status.code).toBe(ExitCodes.stopped);
    const late = await run(["approve", execution, "--local"]);
    expect(late.code).toBe(ExitCodes.notFound);
    expect(late.stderr).toContain(`restore ${execution} is ABORTED: nothing waits for an answer`);
    // The stale approval went with the refusal.
    expect((await run(["approve", execution, "--local"])).stderr).toContain("no restore is waiting");
  }, 60_000);

  it("restores the snapshot once approved from another process", async () => {
    const listed = JSON.parse((await run(["list", "--local", "--cluster", "local", "--json"])).stdout);
    const snapshotId = listed.snapshots.find((row: { tags: string[] }) => row.tags.includes("on-demand"))
      .snapshotId as string;
    const approved = await restoreAnswered(snapshotId, ["approve", "--by", "sre-lead"]);
    expect(approved.answered.code, approved.answered.stderr).toBe(0);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toContain(`${approved.execution}: SUCCEEDED`);
    expect(approved.after).toMatchObject({ code: 0, status: { status: "SUCCEEDED" } });
    expect(approved.stderr).toContain("restore ▶ CheckEtcdHealth");
    expect(approved.stderr).toContain(`was restored from snapshot ${snapshotId}`);
    // The notice names the command that shows the execution where a deployed one links to the console.
    expect(approved.stderr).toContain(`Status:    etcd-backup status ${approved.execution} --local`);
    expect(approved.stderr).not.toContain("console.aws.amazon.com");
    // Followed from a third terminal: the agent's reports as they changed, phase by phase.
    expect(approved.followed).toMatch(/^ {2}member-0: prepare done — ready: /m);
    expect(approved.followed).toMatch(/^ {2}member-0: restore done — /m);
    expect(await registryKeys()).toBe(40);
  }, 90_000);

  it("refuses a second local up on the same session file while the first runs", async () => {
    const second = await run(["local", "up", "--keys", "0"]);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain(`a local stack is already running (pid ${session.pid}`);
  }, 60_000);

  it("stops on Ctrl-C, removing its files and the session; --local then says none runs", async () => {
    up.child.kill("SIGINT");
    expect(await up.exit).toBe(0);
    expect(existsSync(session.sessionFile)).toBe(false);
    expect(existsSync(session.environment.workDir)).toBe(false);
    const listed = await run(["list", "--local", "--cluster", "local"]);
    expect(listed.code).toBe(2);
    expect(listed.stderr).toContain("no local stack is running");
  }, 30_000);

  it("stops as well when its terminal closes (SIGHUP), though nothing can be written any more", async () => {
    const again = start(["local", "up", "--keys", "0", "--json"]);
    const started = await until(() => {
      if (again.child.exitCode !== null) throw new Error(`local up exited: ${again.stderr()}`);
      try {
        return JSON.parse(again.stdout()) as typeof session;
      } catch {
        return undefined;
      }
    }, "local up");
    // The terminal is gone: its output pipes are closed before the hang-up arrives.
    again.child.stdout?.destroy();
    again.child.stderr?.destroy();
    again.child.kill("SIGHUP");
    await again.exit;
    expect(existsSync(started.sessionFile)).toBe(false);
    expect(existsSync(started.environment.workDir)).toBe(false);
    expect(await isHealthy(started.etcdEndpoints[0] as string)).toBe(false);
  }, 90_000);
});
