// The restore state machine's refusals, executed locally: nothing on the nodes may change.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEtcdWriter } from "../../cli/local/etcd-writer.js";
import { type LocalStack, localCluster, startLocalStack } from "../../cli/local/local-stack.js";
import type { PublishedMessage } from "../../cli/local/local-state-machine.js";
import { runLocalBackup, runLocalRestore } from "../../cli/local/local-workflows.js";
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";

let stack: LocalStack;
let snapshotId: string;

beforeAll(async () => {
  stack = await startLocalStack({ members: 1 });
  const writer = createEtcdWriter({ endpoints: stack.etcd.nodes.map((node) => node.clientUrl) });
  await writer.putMany(
    Array.from({ length: 50 }, (_, index) => [`/registry/pods/default/p-${index}`, `v${index}`]),
  );
  const backup = await runLocalBackup({ cluster: localCluster }, { retryIntervalMs: 0 });
  expect(backup.status).toBe("SUCCEEDED");
  snapshotId = (await stack.catalogue.findLatestVerified(localCluster))?.snapshotId as string;
  await writer.put("/registry/pods/default/after", "written after the snapshot");
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

async function keysNow(): Promise<number> {
  const client = createEtcdClient({ endpoint: stack.etcd.nodes[0]?.clientUrl as string });
  try {
    return (await client.countKeys("/registry/")).count;
  } finally {
    client.close();
  }
}

async function restore(input: Record<string, unknown>, approve: () => Promise<unknown>) {
  const published: PublishedMessage[] = [];
  const result = await runLocalRestore(input, {
    approve,
    retryIntervalMs: 0,
    onPublish: (message) => published.push(message),
  });
  const entered = result.states.filter((event) => event.type === "entered").map((event) => event.state);
  return { ...result, entered, published };
}

describe("the restore state machine refuses and changes nothing", () => {
  it("ends when the approver rejects, before taking the lease or touching a node", async () => {
    const rejection = Object.assign(new Error("not now"), { name: "RestoreRejected" });
    const run = await restore({ cluster: localCluster, snapshotId, allowWithoutRevisionBump: true }, () =>
      Promise.reject(rejection),
    );
    expect(run.status).toBe("FAILED");
    expect(run.entered).toContain("RestoreRejectedBeforeChanges");
    expect(run.entered).not.toContain("AcquireLease");
    expect(run.entered).not.toContain("WritePlans");
    expect(run.published[0]?.message).toContain("nothing on the nodes was touched");
    expect(await keysNow()).toBe(51);
    const approval = (await stack.readNotifications()).at(-1);
    expect(approval?.message).toContain(`etcd-backup approve`);
    expect(approval?.message).not.toMatch(/local-task-token/);
  });

  it("refuses etcd 3.4's restore tool unless the input accepts restoring without a revision bump", async () => {
    const run = await restore({ cluster: localCluster, snapshotId }, () =>
      Promise.resolve({ approved: true }),
    );
    expect(run.status).toBe("FAILED");
    expect(run.entered).not.toContain("RequestApproval");
    expect(run.published[0]?.message).toContain("cannot bump revisions");
    expect(await keysNow()).toBe(51);
  });

  it("refuses a snapshot catalogued under another cluster unless allowCrossCluster is set", async () => {
    const run = await restore(
      { cluster: localCluster, sourceCluster: "other", snapshotId, allowWithoutRevisionBump: true },
      () => Promise.resolve({ approved: true }),
    );
    expect(run.status).toBe("FAILED");
    expect(run.published[0]?.message).toContain("belongs to cluster other");
  });

  it("refuses a snapshot id the catalogue does not know", async () => {
    const run = await restore(
      { cluster: localCluster, snapshotId: "20200101T000000000Z-000000", allowWithoutRevisionBump: true },
      () => Promise.resolve({ approved: true }),
    );
    expect(run.status).toBe("FAILED");
    expect(run.published[0]?.message).toContain("SnapshotNotFoundError");
    expect(await keysNow()).toBe(51);
  });
});
