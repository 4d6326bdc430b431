// The restore state machine when etcd is down, the case it exists for: a member whose database is lost
// crash-loops under its static-pod supervisor, so no safety snapshot can be taken. Without
// skipSafetySnapshot the restore changes nothing; with it, the state machine still tries the safety
// snapshot, goes on without it, and brings etcd back from the catalogued snapshot.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEtcdWriter } from "../../cli/local/etcd-writer.js";
import { type LocalStack, localCluster, startLocalStack } from "../../cli/local/local-stack.js";
import type { PublishedMessage } from "../../cli/local/local-state-machine.js";
import { runLocalBackup, runLocalRestore } from "../../cli/local/local-workflows.js";
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import { restoreIdFor } from "../../lambdas/core/restore/restore-plans-step.js";

let stack: LocalStack;
let snapshotId: string;

beforeAll(async () => {
  stack = await startLocalStack({ members: 1 });
  const writer = createEtcdWriter({ endpoints: stack.etcd.nodes.map((node) => node.clientUrl) });
  await writer.putMany(
    Array.from({ length: 30 }, (_, index) => [`/registry/pods/default/p-${index}`, `v${index}`]),
  );
  const backup = await runLocalBackup({ cluster: localCluster }, { retryIntervalMs: 0 });
  expect(backup.status).toBe("SUCCEEDED");
  snapshotId = (await stack.catalogue.findLatestVerified(localCluster))?.snapshotId as string;
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const node = () => {
  const first = stack.etcd.nodes[0];
  if (!first) throw new Error("the local stack has no member");
  return first;
};

/** etcd's database is lost: its file is overwritten and the process killed; the supervisor's restarts fail. */
function loseEtcdDatabase(): void {
  writeFileSync(join(node().dataDir, "member", "snap", "db"), Buffer.alloc(8192, 0xab));
  const pid = stack.etcd.supervisor.pid(node().name, "etcd");
  if (pid !== undefined) process.kill(pid, "SIGKILL");
}

async function etcdAnswers(): Promise<boolean> {
  const client = createEtcdClient({ endpoint: node().clientUrl, callTimeoutMs: 1000 });
  try {
    await client.status();
    return true;
  } catch {
    return false;
  } finally {
    client.close();
  }
}

async function registryKeys(): Promise<number> {
  const client = createEtcdClient({ endpoint: node().clientUrl });
  try {
    return (await client.countKeys("/registry/")).count;
  } finally {
    client.close();
  }
}

async function restore(input: Record<string, unknown>, onEntered?: (state: string) => void) {
  const published: PublishedMessage[] = [];
  const result = await runLocalRestore(
    { cluster: localCluster, snapshotId, allowWithoutRevisionBump: true, ...input },
    {
      retryIntervalMs: 0,
      onApprovalRequested: (name) => stack.approvals.recordAnswer(name, { approved: true, by: "test" }),
      onPublish: (message) => published.push(message),
      onEvent: (event) => {
        if (event.type === "entered") onEntered?.(event.state);
      },
    },
  );
  const entered = result.states.filter((event) => event.type === "entered").map((event) => event.state);
  return { ...result, entered, notice: published.at(-1)?.message ?? "" };
}

describe("the restore state machine when etcd is down", () => {
  it("changes nothing when etcd fails after validation and the input does not say it is down", async () => {
    // etcd answered validation; it is lost once the restore holds the lease, so the safety snapshot fails.
    const run = await restore({}, (state) => {
      if (state === "AcquireLease") loseEtcdDatabase();
    });
    expect(run.status).toBe("FAILED");
    expect(run.entered).toContain("SafetySnapshot");
    expect(run.entered).toContain("SafetySnapshotRefused");
    expect(run.entered).not.toContain("WritePlans");
    expect(run.notice).toContain(
      "SafetySnapshotFailed: The safety snapshot of the current state could not be taken",
    );
    expect(run.notice).toContain("--skip-safety-snapshot");
    // The backup execution that failed is named; its own notice told on-call why.
    expect(run.notice).toMatch(
      /Safety: {4}the safety snapshot failed: BackupFailed \(execution arn:aws:states:local:\d+:execution:backup:/,
    );
    expect(run.notice).toContain("nothing on the nodes was touched");
    expect(await etcdAnswers()).toBe(false);
  }, 120_000);

  it("refuses before asking anyone when etcd does not answer and the input does not say it is down", async () => {
    const run = await restore({});
    expect(run.status).toBe("FAILED");
    expect(run.entered).not.toContain("RequestApproval");
    expect(run.notice).toContain("etcd did not answer the restore at");
    expect(run.notice).toContain("--skip-safety-snapshot");
  }, 120_000);

  it("with skipSafetySnapshot, still tries the safety snapshot, goes on without it, and brings etcd back", async () => {
    const run = await restore({ skipSafetySnapshot: true });
    expect(run.status, JSON.stringify(run.error)).toBe("SUCCEEDED");
    expect(run.entered).toContain("SafetySnapshot");
    expect(run.entered).toContain("SafetySnapshotSkipped");
    expect(run.entered).toContain("CheckEtcdHealth");
    expect(run.notice).toContain(`was restored from snapshot ${snapshotId}`);
    expect(run.notice).toContain("Undo:      none — the state before could not be saved");
    expect(run.notice).toContain("Safety:    the safety snapshot failed: BackupFailed");
    expect(run.notice).not.toContain("--allow-cluster-id-change");
    await stack.etcd.waitUntilHealthy(30_000);
    expect(await registryKeys()).toBe(30);
    // The lost database is kept beside the restored one, as every member's old data dir is.
    expect(existsSync(`${node().dataDir}.pre-restore-${restoreIdFor(run.executionArn)}`)).toBe(true);
    const safety = (await stack.catalogue.listSnapshots(localCluster)).snapshots.filter((row) =>
      row.tags.includes("pre-restore"),
    );
    expect(safety.every((row) => row.status !== "VERIFIED")).toBe(true);
  }, 180_000);
});
