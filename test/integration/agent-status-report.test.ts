// A running restore's agents as `etcd-backup status` reads them: the status objects under the restore's
// prefix in s3rver, each member's last report, and nothing else there (plans, the script, other restores).
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withAgentReports } from "../../cli/restore-agent-reports.js";
import { readAgentReports, restoreRunPrefix } from "../../lambdas/core/restore/agent-status-report.js";
import { type RestoreAgentStatus, renderStatus } from "../../lambdas/core/restore/restore-plan.js";
import { type LocalS3, startLocalS3 } from "../support/s3-server.js";

let s3: LocalS3;
const prefix = "etcd-backup";
const restoreId = "restore-prod-eu-1764000000000";
const executionArn = `arn:aws:states:eu-west-1:111122223333:execution:Restore:${restoreId}`;

const status = (member: string, message: string): RestoreAgentStatus => ({
  restoreId,
  member,
  phase: "restore",
  state: "working",
  message,
  updatedAt: "2026-11-25T16:00:00.000Z",
  log: ["16:00:00 downloading the snapshot (8589934592 bytes)"],
});

async function put(key: string, body: string) {
  await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
}

beforeAll(async () => {
  s3 = await startLocalS3();
  const run = restoreRunPrefix(prefix, "prod-eu", restoreId);
  await put(
    `${run}cp-1/status.json`,
    renderStatus(status("cp-1", "downloading the snapshot: 3120 MiB of 8192 MiB (38%)")),
  );
  await put(
    `${run}cp-0/status.json`,
    renderStatus(status("cp-0", "downloaded the snapshot (8192 MiB); restoring it")),
  );
  await put(`${run}cp-0/plan.json`, '{"plan":{"snapshot":{"url":"https://signed?X-Amz-Signature=s"}}}');
  await put(`${run}agent.sh`, "#!/usr/bin/env bash\n");
  // Half-written (s3rver writes in place): left out until the next read.
  await put(`${run}cp-2/status.json`, '{"restoreId":');
  // Another restore of the same cluster.
  await put(
    `${restoreRunPrefix(prefix, "prod-eu", "restore-prod-eu-1")}cp-0/status.json`,
    renderStatus(status("cp-0", "old")),
  );
});

afterAll(async () => {
  await s3?.stop();
});

describe("the agents' reports of a running restore", () => {
  it("are each member's last status under the restore's prefix, in member order", async () => {
    const reports = await readAgentReports(s3.client, {
      bucket: s3.bucket,
      prefix,
      cluster: "prod-eu",
      restoreId,
    });
    expect(reports).toEqual([
      {
        member: "cp-0",
        phase: "restore",
        state: "working",
        message: "downloaded the snapshot (8192 MiB); restoring it",
        updatedAt: "2026-11-25T16:00:00.000Z",
      },
      {
        member: "cp-1",
        phase: "restore",
        state: "working",
        message: "downloading the snapshot: 3120 MiB of 8192 MiB (38%)",
        updatedAt: "2026-11-25T16:00:00.000Z",
      },
    ]);
  });

  it("join a running restore's status, and only a running restore's", async () => {
    const source = async () => ({ s3: s3.client, bucket: s3.bucket, prefix });
    const running = {
      executionArn,
      name: restoreId,
      status: "RUNNING" as const,
      input: { cluster: "prod-eu", snapshotId: "20261125T010000000Z-000001" },
    };
    expect((await withAgentReports(running, source)).agents?.map((agent) => agent.member)).toEqual([
      "cp-0",
      "cp-1",
    ]);
    const finished = { ...running, status: "SUCCEEDED" as const };
    expect(await withAgentReports(finished, source)).toEqual(finished);
    const backup = { ...running, input: { cluster: "prod-eu" } };
    expect(await withAgentReports(backup, source)).toEqual(backup);
    // A bucket it may not read is said, not thrown.
    const denied = await withAgentReports(running, async () => ({
      s3: s3.client,
      bucket: "no-such-bucket",
      prefix,
    }));
    expect(denied.agents).toBeUndefined();
    expect(denied.agentsUnavailable).toMatch(/bucket/i);
  });
});
