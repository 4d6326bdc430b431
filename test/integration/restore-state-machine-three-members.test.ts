// The restore state machine on a three-member etcd run as static pods: a download that fails its check,
// one member whose etcd cannot start after the others restarted on the snapshot, and restored members whose
// content is not the snapshot's catalogued HashKV roll every member back to its own data; then a restore
// brings every member to the snapshot. Only the state machine, its handlers
// and the agents it starts touch etcd.
import { existsSync, readdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { DynamoDBDocumentClient, GetCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEtcdWriter } from "../../cli/local/etcd-writer.js";
import { type LocalStack, localCluster, startLocalStack } from "../../cli/local/local-stack.js";
import type { PublishedMessage } from "../../cli/local/local-state-machine.js";
import { runLocalBackup, runLocalRestore } from "../../cli/local/local-workflows.js";
import { etcdManifestName } from "../../cli/local/static-pod-etcd.js";
import { snapshotSortKey } from "../../lambdas/core/catalogue/catalogue-table.js";
import type { SnapshotRecord } from "../../lambdas/core/catalogue/snapshot-record.js";
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import { parkedManifestDirFor, restoreIdFor } from "../../lambdas/core/restore/restore-plans-step.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import { registryEntries } from "../support/registry-entries.js";

let stack: LocalStack;
let snapshot: SnapshotRecord;

/** Every /registry/ key and its value, as member `index` serves them. */
function registry(index: number): Promise<Map<string, string>> {
  return registryEntries(stack.etcd.nodes[index]?.clientUrl as string);
}

/** Each member's cluster id and leader, and every member's revision. */
async function clusterView() {
  const statuses = [];
  for (const node of stack.etcd.nodes) {
    const client = createEtcdClient({ endpoint: node.clientUrl });
    try {
      statuses.push(await client.status());
    } finally {
      client.close();
    }
  }
  return {
    clusterIds: new Set(statuses.map((status) => status.clusterId)),
    leaders: new Set(statuses.map((status) => status.leaderId)),
    revisions: new Set(statuses.map((status) => status.revision)),
  };
}

async function restore(onEntered?: (state: string) => Promise<void>) {
  const published: PublishedMessage[] = [];
  const pending: Array<Promise<void>> = [];
  const result = await runLocalRestore(
    { cluster: localCluster, snapshotId: snapshot.snapshotId, allowWithoutRevisionBump: true },
    {
      retryIntervalMs: 0,
      onApprovalRequested: (name) => stack.approvals.recordAnswer(name, { approved: true, by: "test" }),
      onPublish: (message) => published.push(message),
      onEvent: (event, machine) => {
        if (machine === "restore" && event.type === "entered" && onEntered)
          pending.push(onEntered(event.state));
      },
    },
  );
  await Promise.all(pending);
  const entered = result.states.filter((event) => event.type === "entered").map((event) => event.state);
  return { ...result, entered, published };
}

beforeAll(async () => {
  stack = await startLocalStack({ members: 3 });
  const writer = createEtcdWriter({ endpoints: stack.etcd.nodes.map((node) => node.clientUrl) });
  await writer.putMany(
    Array.from({ length: 60 }, (_, index) => [`/registry/pods/default/p-${index}`, `v-${index}`]),
  );
  const backup = await runLocalBackup({ cluster: localCluster }, { retryIntervalMs: 0 });
  expect(backup.status).toBe("SUCCEEDED");
  snapshot = (await stack.catalogue.findLatestVerified(localCluster)) as SnapshotRecord;
  await writer.putMany(
    Array.from({ length: 5 }, (_, index) => [`/registry/events/default/after-${index}`, `late-${index}`]),
  );
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

describe("the restore state machine on three members", () => {
  it("rolls every member back to its own data when the download fails its check", async () => {
    const before = await registry(0);
    const clusterBefore = await clusterView();
    expect(before.size).toBe(65);
    const key = snapshot.key as string;
    const original = Buffer.from(
      (await (
        await stack.s3.client.send(new GetObjectCommand({ Bucket: stack.s3.bucket, Key: key }))
      ).Body?.transformToByteArray()) ?? new Uint8Array(),
    );
    // After validation and approval, while the members are being stopped, the stored object is damaged:
    // same size, one byte of the database changed.
    const damaged = Buffer.from(original);
    damaged[4096] = (damaged[4096] ?? 0) ^ 0xff;
    const run = await restore(async (state) => {
      if (state !== "Phase_stop") return;
      await stack.s3.client.send(new PutObjectCommand({ Bucket: stack.s3.bucket, Key: key, Body: damaged }));
    });
    await stack.s3.client.send(new PutObjectCommand({ Bucket: stack.s3.bucket, Key: key, Body: original }));

    expect(run.status).toBe("FAILED");
    expect(run.entered).toContain("Phase_restore");
    expect(run.entered).toContain("StartRollback");
    expect(run.entered).not.toContain("CheckEtcdHealth");
    expect(run.published.at(-1)?.message).toMatch(/sha256 mismatch|corrupt/);
    await stack.etcd.waitUntilHealthy(30_000);
    // Every member serves its own data again, written after the snapshot included, in the same cluster.
    for (const index of [0, 1, 2]) expect(await registry(index)).toEqual(before);
    const clusterAfter = await clusterView();
    expect(clusterAfter.clusterIds).toEqual(clusterBefore.clusterIds);
    expect(clusterAfter.leaders.size).toBe(1);
  }, 180_000);

  it("rolls every member back, the two already running on the snapshot included, when one member's etcd cannot start", async () => {
    const before = await registry(0);
    const clusterBefore = await clusterView();
    // The third node's etcd manifest is taken away while its data dir is being restored (the restore phase
    // leaves parked manifests alone), so that its start fails after the other two have restarted on the
    // restored data; it comes back when the rollback begins, which needs it to restart etcd.
    const third = stack.etcd.nodes[2];
    if (!third) throw new Error("the local stack has no third member");
    const parked = join(parkedManifestDirFor(third.manifestDir), etcdManifestName);
    const hidden = `${parked}.hidden-by-test`;
    const run = await restore(async (state) => {
      if (state === "Phase_restore") renameSync(parked, hidden);
      if (state === "StartRollback" && existsSync(hidden)) renameSync(hidden, parked);
    });

    expect(run.status).toBe("FAILED");
    expect(run.entered).toContain("Phase_start");
    expect(run.entered).toContain("StartRollback");
    expect(run.entered).not.toContain("CheckEtcdHealth");
    const notice = run.published.at(-1)?.message ?? "";
    expect(notice).toContain(`manifest ${etcdManifestName} is in neither`);
    expect(notice).toMatch(/rolled back/);
    // Its timings: since when the API servers were down, and each phase up to the rollback's own.
    expect(notice).toMatch(
      /^Outage: {4}the API servers were told to stop at \S+, .* before this notice; the rollback started them again/m,
    );
    expect(notice).toMatch(/^Phases: {4}safety snapshot .*, restore .*, start-etcd .*, rollback \S/m);
    await stack.etcd.waitUntilHealthy(30_000);
    // Every member had swapped in the restored data dir, and the rollback moved it aside: the original
    // data, written after the snapshot included, is served again by the same cluster.
    const restoreId = restoreIdFor(run.executionArn);
    for (const node of stack.etcd.nodes) expect(existsSync(`${node.dataDir}.failed-${restoreId}`)).toBe(true);
    for (const index of [0, 1, 2]) expect(await registry(index)).toEqual(before);
    const clusterAfter = await clusterView();
    expect(clusterAfter.clusterIds).toEqual(clusterBefore.clusterIds);
    expect(clusterAfter.leaders.size).toBe(1);
  }, 180_000);

  it("rolls every member back when the restored members do not hold the snapshot's catalogued HashKV", async () => {
    const before = await registry(0);
    // As if the object restored were not the one verification read: same size and sha256 on the row,
    // but the content catalogued at verification is another. Only the content check can tell.
    const documents = DynamoDBDocumentClient.from(createDynamoDbClient({ endpoint: stack.dynamo.endpoint }));
    const key = { cluster: localCluster, sk: snapshotSortKey(snapshot.snapshotId) };
    const row = (await documents.send(new GetCommand({ TableName: stack.tableName, Key: key }))).Item;
    const kvHash = row?.kvHash as { hash: number; compactRevision: number };
    expect(kvHash.hash).toBeGreaterThan(0);
    const setKvHash = (value: typeof kvHash) =>
      documents.send(
        new UpdateCommand({
          TableName: stack.tableName,
          Key: key,
          UpdateExpression: "SET kvHash = :kvHash",
          ExpressionAttributeValues: { ":kvHash": value },
        }),
      );
    await setKvHash({ ...kvHash, hash: kvHash.hash ^ 1 });
    try {
      const run = await restore();
      expect(run.status).toBe("FAILED");
      expect(run.entered).toContain("CheckEtcdHealth");
      expect(run.entered).toContain("StartRollback");
      expect(run.entered).not.toContain("Phase_start_apiserver");
      expect(run.published.at(-1)?.message).toContain("its content is not the snapshot's");
      // Not retried: nothing about it changes with time.
      expect(
        run.states.filter((event) => event.type === "retried" && event.state === "CheckEtcdHealth"),
      ).toEqual([]);
    } finally {
      await setKvHash(kvHash);
    }
    await stack.etcd.waitUntilHealthy(30_000);
    for (const index of [0, 1, 2]) expect(await registry(index)).toEqual(before);
  }, 240_000);

  it("restores every member to the snapshot: its keys back with their values, later ones gone", async () => {
    const run = await restore();
    expect(run.status, JSON.stringify(run.error)).toBe("SUCCEEDED");
    expect(run.published.at(-1)?.message).toContain("3 member(s) healthy, one leader");
    expect(run.published.at(-1)?.message).toContain("content as the snapshot's (HashKV)");
    // Each agent ran its script from an unlinked file: none is left in /var/tmp.
    const restoreId = restoreIdFor(run.executionArn);
    expect(readdirSync("/var/tmp").filter((name) => name.includes(restoreId))).toEqual([]);
    await stack.etcd.waitUntilHealthy(30_000);
    const expected = new Map(
      Array.from({ length: 60 }, (_, index) => [`/registry/pods/default/p-${index}`, `v-${index}`]),
    );
    for (const index of [0, 1, 2]) expect(await registry(index)).toEqual(expected);
    const view = await clusterView();
    expect(view.clusterIds.size).toBe(1);
    expect(view.leaders.size).toBe(1);
    expect(view.revisions).toEqual(new Set([snapshot.revision]));
    const safety = (
      await stack.catalogue.listSnapshots(localCluster, { status: "VERIFIED" })
    ).snapshots.filter((row) => row.tags.includes("pre-restore"));
    // One safety snapshot per restore that got past approval: the three rolled back and this one.
    expect(safety).toHaveLength(4);
  }, 180_000);
});
