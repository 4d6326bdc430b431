import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { startLocalDynamoDb } from "../support/dynamodb-server.js";
import { startEtcdCluster } from "../support/etcd-cluster.js";
import { createEtcdWriter } from "../support/etcd-writer.js";
import { startLocalS3 } from "../support/s3-server.js";

const run = promisify(execFile);

describe("test harness", () => {
  it("starts a three-member etcd whose members all answer, and stops it", async () => {
    const cluster = await startEtcdCluster({ members: 3 });
    try {
      const writer = createEtcdWriter(cluster);
      const revision = await writer.putMany([
        ["/a", "1"],
        ["/b", "2"],
      ]);
      expect(revision).toBeGreaterThan(1);
      const { stdout } = await run("etcdctl", [...cluster.etcdctlArgs(2), "get", "/b", "--print-value-only"]);
      expect(stdout.trim()).toBe("2");
    } finally {
      await cluster.stop();
    }
    expect(cluster.members.every((member) => member.process === undefined)).toBe(true);
  });

  it("starts a single etcd with mutual TLS that refuses clients without a certificate", async () => {
    const cluster = await startEtcdCluster({ tls: true });
    try {
      await createEtcdWriter(cluster).put("/tls", "yes");
      const [endpointFlag] = cluster.etcdctlArgs();
      await expect(
        run("etcdctl", [
          endpointFlag as string,
          `--cacert=${cluster.certificates?.caFile}`,
          "--dial-timeout=1s",
          "get",
          "/tls",
        ]),
      ).rejects.toThrow();
    } finally {
      await cluster.stop();
    }
  });

  it("starts s3rver and dynalite on free ports", async () => {
    const s3 = await startLocalS3();
    const dynamo = await startLocalDynamoDb();
    try {
      expect(await s3.listKeys()).toEqual([]);
      expect(await s3.listOpenMultipartUploads()).toEqual([]);
      const response = await fetch(dynamo.endpoint, { method: "POST" });
      expect(response.status).toBe(400);
    } finally {
      await s3.stop();
      await dynamo.stop();
    }
  });
});
