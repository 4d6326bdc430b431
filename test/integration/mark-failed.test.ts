// The failure path's clean-up when part of it fails too: a catalogue outage must not keep the lease or
// the open upload. Real s3rver and dynalite; the catalogue points at a DynamoDB endpoint that is down.
import { CreateMultipartUploadCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { markBackupFailed } from "../../lambdas/core/backup/mark-failed-step.js";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { ClusterLeases } from "../../lambdas/core/catalogue/cluster-lease.js";
import { snapshotObjectKey } from "../../lambdas/core/snapshot/snapshot-naming.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "../support/dynamodb-server.js";
import { type LocalS3, startLocalS3 } from "../support/s3-server.js";

let s3: LocalS3;
let dynamo: LocalDynamoDb;
const tableName = "catalogue";

beforeAll(async () => {
  [s3, dynamo] = await Promise.all([startLocalS3(), startLocalDynamoDb()]);
  const client = createDynamoDbClient({ endpoint: dynamo.endpoint });
  await createCatalogueTable(client, tableName);
  client.destroy();
}, 60_000);

afterAll(async () => {
  await Promise.all([s3?.stop(), dynamo?.stop()]);
});

describe("markBackupFailed", () => {
  it("aborts the open upload and releases the lease even when the catalogue cannot be reached", async () => {
    const live = createDynamoDbClient({ endpoint: dynamo.endpoint });
    // Nothing listens on port 9: every call is refused.
    const down = createDynamoDbClient({ endpoint: "http://127.0.0.1:9" });
    const leases = new ClusterLeases({ client: live, tableName });
    const executionArn = "arn:aws:states:eu-west-1:1:execution:Backup:run-1";
    const snapshotId = "20261125T030000000Z-abc123";
    const key = snapshotObjectKey("etcd-backup", "prod", snapshotId);
    try {
      await leases.acquireLease({ cluster: "prod", owner: executionArn, ttlSeconds: 600, now: new Date() });
      await s3.client.send(new CreateMultipartUploadCommand({ Bucket: s3.bucket, Key: key }));
      expect(await s3.listOpenMultipartUploads()).toEqual([key]);

      const { message } = await markBackupFailed(
        {
          s3: s3.client,
          catalogue: new CatalogueRepository({ client: down, tableName }),
          leases,
          bucket: s3.bucket,
          prefix: "etcd-backup",
          loadTargets: () => Promise.reject(new Error("not needed")),
          loadEtcdTls: async () => undefined,
          now: () => new Date(),
          reporter: silentReporter,
        },
        { cluster: "prod" },
        executionArn,
        {
          lease: { acquired: true },
          target: { snapshotId },
          failure: { Error: "StorageUnavailableError", Cause: '{"errorMessage":"S3 said 500"}' },
        },
      );

      expect(await s3.listOpenMultipartUploads()).toEqual([]);
      expect((await leases.getLease("prod"))?.owner).toBeUndefined();
      expect(message).toMatch(/could not mark catalogue row 20261125T030000000Z-abc123 FAILED/);
      expect(message).toMatch(/1 open multipart upload\(s\) aborted/);
      expect(message).toMatch(/lease released/);
    } finally {
      live.destroy();
      down.destroy();
    }
  }, 60_000);
});
