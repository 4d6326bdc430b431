// The restore state machine's refusals, executed locally: nothing on the nodes may change. Then one
// restore through every barrier, whose agents follow the URLs each plan renews.
import { readFile, writeFile } from "node:fs/promises";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { DynamoDBDocumentClient, GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEtcdWriter } from "../../cli/local/etcd-writer.js";
import { type LocalStack, localCluster, startLocalStack } from "../../cli/local/local-stack.js";
import type { PublishedMessage } from "../../cli/local/local-state-machine.js";
import { runLocalBackup, runLocalRestore } from "../../cli/local/local-workflows.js";
import { formatBytes } from "../../lambdas/core/byte-size.js";
import { CatalogueTable, snapshotSortKey } from "../../lambdas/core/catalogue/catalogue-table.js";
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import { parsePlan, parseStatus, type RestorePlan } from "../../lambdas/core/restore/restore-plan.js";
import type { RestoreTimings } from "../../lambdas/core/restore/restore-timings.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import type { StepProgress } from "../../lambdas/handlers/shared/step-progress.js";

let stack: LocalStack;
let snapshotId: string;
const backupProgress: StepProgress[] = [];

/** The local cluster again, restored with etcdctl as on etcd 3.4, whatever this machine's etcd has. */
const etcdctlCluster = "local-etcdctl";
/** The local cluster again, whose restore phases time out after the least a target may set. */
const shortPhaseCluster = "local-short-phases";

beforeAll(async () => {
  stack = await startLocalStack({ members: 1 });
  const targetsFile = stack.environment.targetsFile as string;
  const targets = JSON.parse(await readFile(targetsFile, "utf8")) as {
    targets: Array<{ name: string; restore: Record<string, unknown> }>;
  };
  const local = targets.targets[0] as (typeof targets.targets)[number];
  const { toolPath: _installedTool, ...restore } = local.restore;
  targets.targets.push(
    { ...local, name: etcdctlCluster, restore: { ...restore, restoreTool: "etcdctl" } },
    { ...local, name: shortPhaseCluster, restore: { ...local.restore, phaseTimeoutSeconds: 30 } },
  );
  await writeFile(targetsFile, JSON.stringify(targets, null, 2));
  const writer = createEtcdWriter({ endpoints: stack.etcd.nodes.map((node) => node.clientUrl) });
  await writer.putMany(
    Array.from({ length: 50 }, (_, index) => [`/registry/pods/default/p-${index}`, `v${index}`]),
  );
  const backup = await runLocalBackup(
    { cluster: localCluster },
    { retryIntervalMs: 0, onProgress: (progress) => backupProgress.push(progress) },
  );
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

/** How the approver answers, once the approval is requested: as `etcd-backup approve|reject --local` does. */
type Answer = (executionName: string) => Promise<void>;
const approve: Answer = (name) => stack.approvals.recordAnswer(name, { approved: true, by: "test" });
const reject: Answer = (name) =>
  stack.approvals.recordAnswer(name, { approved: false, by: "test", reason: "not now" });
/** Nobody answers, and the approval's deadline passes. */
const letExpire: Answer = async (name) => {
  const pending = await stack.approvals.find(name);
  await stack.approvals.save({ ...pending, expiresAt: Math.floor(Date.now() / 1000) - 1 });
};

async function restore(
  input: Record<string, unknown>,
  answer: Answer,
  onEntered?: (state: string) => void,
  agentEnvironment?: Record<string, string>,
) {
  const published: PublishedMessage[] = [];
  const result = await runLocalRestore(input, {
    agentEnvironment,
    onApprovalRequested: answer,
    retryIntervalMs: 0,
    onPublish: (message) => published.push(message),
    onEvent: (event) => {
      if (event.type === "entered") onEntered?.(event.state);
    },
  });
  const entered = result.states.filter((event) => event.type === "entered").map((event) => event.state);
  return { ...result, entered, published };
}

describe("the local backup", () => {
  it("hears its steps' live progress: bytes streamed, then read back, up to the snapshot's size", async () => {
    const row = await stack.catalogue.getSnapshot(localCluster, snapshotId);
    const streamed = backupProgress.filter((progress) => progress.activity === "streaming");
    const readBack = backupProgress.filter((progress) => progress.activity === "reading back");
    expect(streamed.length).toBeGreaterThan(0);
    expect(streamed.at(-1)?.bytes).toBe(row?.bytes);
    expect(readBack.at(-1)).toEqual({ activity: "reading back", bytes: row?.bytes, totalBytes: row?.bytes });
    // Streaming ends before reading back begins.
    expect(backupProgress.findIndex((progress) => progress.activity === "reading back")).toBe(
      streamed.length,
    );
  });
});

describe("the restore state machine refuses and changes nothing", () => {
  it("ends when the approver rejects, before taking the lease or touching a node", async () => {
    const run = await restore({ cluster: localCluster, snapshotId, allowWithoutRevisionBump: true }, reject);
    expect(run.status).toBe("FAILED");
    expect(run.published[0]?.message).toContain("RestoreRejected");
    expect(run.published[0]?.message).toContain("test: not now");
    expect(run.entered).toContain("RestoreRejectedBeforeChanges");
    expect(run.entered).not.toContain("AcquireLease");
    expect(run.entered).not.toContain("WritePlans");
    expect(run.published[0]?.message).toContain("nothing on the nodes was touched");
    expect(await keysNow()).toBe(51);
    // Validation held the snapshot from retention for the approval wait and the restore's work.
    const held = await stack.catalogue.getSnapshot(localCluster, snapshotId);
    expect(held?.restoreHeldBy).toBe(run.executionArn);
    expect(Date.parse(held?.restoreHeldUntil ?? "")).toBeGreaterThan(Date.now() + 3600 * 1000);
    const approval = (await stack.readNotifications()).at(-1);
    // Locally the commands it quotes carry --local, as the approver must type them.
    expect(approval?.message).toContain(`etcd-backup approve ${run.executionArn.split(":").at(-1)} --local`);
    expect(approval?.message).not.toMatch(/local-task-token/);
    // The approver sees what the members said of the snapshot when it was verified.
    expect(approval?.message).toMatch(
      /Members' HashKV at backup: matches the HashKV of \S+ at revision \d+\./,
    );
    // The local executor's nodes are this machine: their room was measured before anyone was asked.
    const snapshotBytes = (await stack.catalogue.getSnapshot(localCluster, snapshotId))?.bytes ?? 0;
    expect(approval?.message).toMatch(
      new RegExp(
        `Free space for the download, the new data dir and the old one \\(3× the snapshot: ${formatBytes(3 * snapshotBytes).replace(".", "\\.")} needed on each node\\): ${stack.etcd.nodes[0]?.memberName} \\d+\\.\\d \\w+\\.`,
      ),
    );
  });

  it("ends when nobody answers before the approval's deadline, and a late answer finds nothing waiting", async () => {
    let executionName = "";
    const run = await restore(
      { cluster: localCluster, snapshotId, allowWithoutRevisionBump: true },
      (name) => {
        executionName = name;
        return letExpire(name);
      },
    );
    expect(run.status).toBe("FAILED");
    expect(run.entered).toContain("RestoreRejectedBeforeChanges");
    expect(run.entered).not.toContain("AcquireLease");
    expect(run.published[0]?.message).toContain("States.Timeout");
    expect(await keysNow()).toBe(51);
    await expect(approve(executionName)).rejects.toThrow(/no restore is waiting for approval/);
  });

  it("refuses etcd 3.4's restore tool unless the input accepts restoring without a revision bump", async () => {
    const input = {
      cluster: etcdctlCluster,
      sourceCluster: localCluster,
      allowCrossCluster: true,
      snapshotId,
    };
    const run = await restore(input, approve);
    expect(run.status).toBe("FAILED");
    expect(run.entered).not.toContain("RequestApproval");
    expect(run.published[0]?.message).toContain("cannot bump revisions");
    expect(await keysNow()).toBe(51);
  });

  it("refuses a snapshot catalogued under another cluster unless allowCrossCluster is set", async () => {
    await catalogueUnderAnotherCluster(snapshotId, "other");
    const input = {
      cluster: localCluster,
      sourceCluster: "other",
      snapshotId,
      allowWithoutRevisionBump: true,
    };
    const refused = await restore(input, approve);
    expect(refused.status).toBe("FAILED");
    expect(refused.entered).not.toContain("RequestApproval");
    expect(refused.published[0]?.message).toContain("belongs to cluster other");
    expect(await keysNow()).toBe(51);
    // With the flag the same snapshot passes validation and is put to the approvers, who say no here.
    const allowed = await restore({ ...input, allowCrossCluster: true }, reject);
    expect(allowed.entered).toContain("RequestApproval");
    expect(allowed.published[0]?.message).toContain("RestoreRejected");
    const request = (await stack.readNotifications()).at(-1)?.message ?? "";
    expect(request).toContain(snapshotId);
    expect(await keysNow()).toBe(51);
  });

  it("says what became of an agent that never reported: its command's status and last line of stderr", async () => {
    // The agent refuses its environment at once, before it could write a status.
    const run = await restore(
      {
        cluster: shortPhaseCluster,
        sourceCluster: localCluster,
        allowCrossCluster: true,
        snapshotId,
        allowWithoutRevisionBump: true,
      },
      approve,
      undefined,
      { ETCD_RESTORE_AGENT_POLL_SECONDS: "soon" },
    );
    expect(run.status).toBe("FAILED");
    expect(run.entered).toContain("DescribeAgentCommands_abort");
    expect(run.entered).not.toContain("Phase_stop_apiserver");
    const notice = run.published.at(-1)?.message ?? "";
    expect(notice).toMatch(/^Changes: +none — nothing on the nodes was touched/m);
    expect(notice).toMatch(
      /^Agents: +phase prepare passed its deadline .*: member-0: none working — no status yet/m,
    );
    const node = stack.etcd.nodes[0];
    expect(notice).toContain(
      `\nCommands:  ${node?.memberName} (${node?.name}): Failed — ETCD_RESTORE_AGENT_POLL_SECONDS must be a number of seconds\n`,
    );
    expect(await keysNow()).toBe(51);
  }, 90_000);

  it("refuses a snapshot id the catalogue does not know", async () => {
    const run = await restore(
      { cluster: localCluster, snapshotId: "20200101T000000000Z-000000", allowWithoutRevisionBump: true },
      approve,
    );
    expect(run.status).toBe("FAILED");
    expect(run.published[0]?.message).toContain("SnapshotNotFoundError");
    expect(await keysNow()).toBe(51);
  });
});

/** Catalogues the same stored snapshot under another cluster, as a copy of its row (another cluster's backup). */
async function catalogueUnderAnotherCluster(id: string, cluster: string): Promise<void> {
  const documents = DynamoDBDocumentClient.from(createDynamoDbClient({ endpoint: stack.dynamo.endpoint }));
  const { Item } = await documents.send(
    new GetCommand({ TableName: stack.tableName, Key: { cluster: localCluster, sk: snapshotSortKey(id) } }),
  );
  if (!Item) throw new Error(`no catalogue row for ${id}`);
  const { [CatalogueTable.verifiedByClusterIndex.partitionKey.name]: _index, ...row } = Item;
  await documents.send(new PutCommand({ TableName: stack.tableName, Item: { ...row, cluster } }));
}

async function readObject(key: string): Promise<string> {
  const reply = await stack.s3.client.send(new GetObjectCommand({ Bucket: stack.s3.bucket, Key: key }));
  return (await reply.Body?.transformToString("utf8")) ?? "";
}

/** When a presigned URL was signed (SigV4's X-Amz-Date, to the second) and for how long. */
function signing(url: string | undefined) {
  const query = new URL(url ?? "").searchParams;
  return { signedAt: query.get("X-Amz-Date") ?? "", expires: query.get("X-Amz-Expires") };
}

describe("the restore state machine renewing the agents' URLs", () => {
  it("writes every phase's plan with URLs signed at that write, and the agents finish on them", async () => {
    const restoresPrefix = `${stack.prefix}/${localCluster}/_restores/`;
    const planKeys = async () =>
      (await stack.s3.listKeys(restoresPrefix)).filter((key) => key.endsWith("/plan.txt"));
    // Each phase's plan, read as its Wait state begins (the plan was written by the state before it).
    const reads: Array<Promise<{ state: string; plan: RestorePlan }>> = [];
    const podEventsFrom = stack.etcd.events.length;
    const startedBefore = Date.now();
    const run = await restore(
      { cluster: localCluster, snapshotId, allowWithoutRevisionBump: true },
      approve,
      (state) => {
        if (state !== "StartAgents" && !state.startsWith("Wait_")) return;
        reads.push(
          planKeys().then(async (keys) => ({
            state,
            plan: parsePlan(await readObject(keys[0] as string)),
          })),
        );
      },
    );
    expect(run.status, JSON.stringify(run.error)).toBe("SUCCEEDED");
    const tookAtMost = Date.now() - startedBefore;
    // The notice's timings, from the execution's start ($$.Execution.StartTime) and the times the steps
    // kept in the state: the API's outage within the work since approval, within the whole execution.
    const { message, timings } = run.output as { message: string; timings: RestoreTimings };
    expect(message).toMatch(
      /^Took: {6}\S.* after approval; .* since the execution started, the wait for approval included$/m,
    );
    expect(message).toMatch(/^Outage: {4}\S.* without the Kubernetes API, from the stop-apiserver barrier/m);
    expect(message).toMatch(
      /^Phases: {4}safety snapshot \S.*, prepare .*, stop-apiserver .*, stop-etcd .*, restore .*, start-etcd .*, health check .*, start-apiserver .*, finish \S/m,
    );
    expect(timings.outageEnded).toBe(true);
    expect(timings.outageMs).toBeGreaterThan(0);
    expect(timings.outageMs).toBeLessThanOrEqual(timings.sinceApprovalMs as number);
    expect(timings.sinceApprovalMs).toBeLessThanOrEqual(timings.totalMs as number);
    expect(timings.totalMs).toBeLessThanOrEqual(tookAtMost);
    for (const { phase, ms } of timings.phases) expect(ms, phase).toBeGreaterThanOrEqual(0);
    // Each phase lasts until the next began: together, the time since approval.
    expect(timings.phases.reduce((sum, { ms }) => sum + ms, 0)).toBe(timings.sinceApprovalMs);
    // kube-apiserver is stopped at a barrier of its own, and has exited before etcd is told to stop.
    expect(run.entered.indexOf("Phase_stop_apiserver")).toBeGreaterThan(run.entered.indexOf("Phase_prepare"));
    expect(run.entered.indexOf("Phase_stop")).toBeGreaterThan(run.entered.indexOf("Is_stop_apiserver_Done"));
    const podEvents = stack.etcd.events.slice(podEventsFrom);
    const apiServerExit = podEvents.findIndex(
      (event) => event.pod === "kube-apiserver" && event.type === "exited",
    );
    const etcdStop = podEvents.findIndex((event) => event.pod === "etcd" && event.type === "stopping");
    expect(apiServerExit).toBeGreaterThanOrEqual(0);
    expect(etcdStop).toBeGreaterThan(apiServerExit);
    const plans = await Promise.all(reads);
    expect(plans.map(({ state }) => state)).toEqual(
      expect.arrayContaining([
        "StartAgents",
        "Wait_prepare",
        "Wait_stop_apiserver",
        "Wait_stop",
        "Wait_restore",
        "Wait_finish",
      ]),
    );
    for (const { plan } of plans) {
      for (const url of [plan.snapshot.url, plan.planUrl, plan.statusUrl]) {
        expect(signing(url).expires).toBe("3600");
      }
    }
    const first = plans[0]?.plan as RestorePlan;
    const last = plans.at(-1)?.plan as RestorePlan;
    expect(last.phase).toBe("finish");
    // The restore takes seconds: the finish plan's URLs were signed after those the agents first read.
    for (const field of ["planUrl", "statusUrl"] as const) {
      expect(signing(last[field]).signedAt > signing(first[field]).signedAt, field).toBe(true);
    }
    expect(signing(last.snapshot.url).signedAt > signing(first.snapshot.url).signedAt).toBe(true);

    // The finish barrier also counts an agent that reported start-apiserver done (the kubelet may have
    // stopped it since), so the execution can end before an agent that still runs has reported finish.
    for (const key of await planKeys()) {
      const statusOf = async () => parseStatus(await readObject(key.replace(/plan\.txt$/, "status.json")));
      await expect.poll(statusOf, { timeout: 15_000 }).toMatchObject({ phase: "finish", state: "done" });
      expect(JSON.stringify(await statusOf())).not.toContain("X-Amz-Signature");
    }
    expect(await keysNow()).toBe(50);
    // This machine's etcdctl 3.4 has no --bump-revision: allowWithoutRevisionBump let it restore without.
    expect(run.published.at(-1)?.message).toMatch(
      /revision \d+ \(NOT bumped: the restore tool has no --bump-revision; restart every Kubernetes client\)/,
    );
    // Not bumped, so the restored member answers the snapshot's own HashKV at its revision.
    expect(run.published.at(-1)?.message).toContain("content as the snapshot's (HashKV)");
    const safety = (await stack.catalogue.listSnapshots(localCluster)).snapshots.find((row) =>
      row.tags?.includes("pre-restore"),
    );
    expect(run.published.at(-1)?.message).toContain(
      // The undo runs on the same nodes' restore tool: it needs the allowance this restore needed.
      `Undo:      etcd-backup restore --local --cluster ${localCluster} --snapshot-id ${safety?.snapshotId} --allow-cluster-id-change --allow-without-revision-bump`,
    );
  }, 120_000);
});

describe("after a restore, etcd's cluster id is a new one", () => {
  // Runs after the restore above: etcd now has the cluster id of its new cluster token, and the
  // snapshots taken before carry the old one.
  const reachedApproval = (run: { entered: string[] }) => run.entered.includes("RequestApproval");

  it("refuses to undo it until a backup of the new cluster exists, unless allowClusterIdChange", async () => {
    // The restore's own safety snapshot: what undoing it would restore, taken from the old cluster id.
    const page = await stack.catalogue.listSnapshots(localCluster);
    const safety = page.snapshots.find(
      (row) => row.tags?.includes("pre-restore") && row.status === "VERIFIED",
    )?.snapshotId;
    expect(safety).toBeDefined();
    const refused = await restore(
      { cluster: localCluster, snapshotId: safety, allowWithoutRevisionBump: true },
      reject,
    );
    expect(refused.status).toBe("FAILED");
    expect(reachedApproval(refused)).toBe(false);
    expect(refused.published[0]?.message).toMatch(/A restore changes the id.*allowClusterIdChange/);

    const allowed = await restore(
      {
        cluster: localCluster,
        snapshotId: safety,
        allowWithoutRevisionBump: true,
        allowClusterIdChange: true,
      },
      reject,
    );
    expect(reachedApproval(allowed)).toBe(true);
    expect(allowed.entered).toContain("RestoreRejectedBeforeChanges");

    // Once a snapshot of the restored etcd is catalogued, the lineage is known: no flag needed.
    const backup = await runLocalBackup({ cluster: localCluster }, { retryIntervalMs: 0 });
    expect(backup.status).toBe("SUCCEEDED");
    const known = await restore(
      { cluster: localCluster, snapshotId: safety, allowWithoutRevisionBump: true },
      reject,
    );
    expect(reachedApproval(known), known.published[0]?.message).toBe(true);
    expect(await keysNow()).toBe(50);
  }, 120_000);
});
