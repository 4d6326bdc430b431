// The snapshot step when the object is whole but cannot be catalogued: no version may stay behind that
// the catalogue does not know, and none may be deleted that it might. Real etcd, s3rver and dynalite.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BackupDependencies } from "../../lambdas/core/backup/backup-dependencies.js";
import { silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { takeSnapshot } from "../../lambdas/core/backup/take-snapshot-step.js";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import { CatalogueUnavailableError, ErrorNames } from "../../lambdas/core/errors.js";
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import { createGrpcSnapshotSource } from "../../lambdas/core/etcd/grpc-snapshot-source.js";
import { newSnapshotId } from "../../lambdas/core/snapshot/snapshot-naming.js";
import { streamSnapshotToS3 } from "../../lambdas/core/snapshot/stream-snapshot.js";
import { createDynamoDbClient, createS3Client } from "../../lambdas/core/store/aws-clients.js";
import { type LocalBackupStack, startLocalBackupStack } from "../support/local-backup-stack.js";

let stack: LocalBackupStack;

beforeAll(async () => {
  stack = await startLocalBackupStack();
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

/** A catalogue whose UPLOADED write fails: before reaching DynamoDB, or after (the answer lost). */
function failingCatalogue(landed: boolean) {
  const client = createDynamoDbClient({ endpoint: stack.dynamo.endpoint });
  const catalogue = new CatalogueRepository({ client, tableName: stack.tableName });
  const recordUploaded = catalogue.recordUploaded.bind(catalogue);
  catalogue.recordUploaded = async (input) => {
    if (landed) await recordUploaded(input);
    throw new CatalogueUnavailableError("the catalogue is unavailable: UpdateItem timed out");
  };
  return { catalogue, close: () => client.destroy() };
}

function dependencies(catalogue: CatalogueRepository): BackupDependencies {
  return {
    s3: stack.s3.client,
    catalogue,
    leases: stack.leases,
    bucket: stack.s3.bucket,
    prefix: stack.prefix,
    loadTargets: async () =>
      parseTargetsFile({
        prefix: stack.prefix,
        targets: [
          {
            name: "local",
            schedule: "rate(1 hour)",
            access: { kind: "direct" },
            etcd: { endpoints: stack.etcd.endpoints },
          },
        ],
      }),
    loadEtcdTls: async () => undefined,
    now: () => new Date(),
    reporter: silentReporter,
  };
}

const target = () => ({
  snapshotId: newSnapshotId(new Date()),
  member: { endpoint: stack.etcd.endpoints[0] as string, memberId: "1", revision: 1 },
});

describe("takeSnapshot when the catalogue fails after the upload", () => {
  it("deletes the whole object the catalogue never heard of, and says so", async () => {
    const { catalogue, close } = failingCatalogue(false);
    const resolved = target();
    try {
      const error = await takeSnapshot(
        dependencies(catalogue),
        { cluster: "local" },
        "run-1",
        resolved,
      ).catch((thrown: unknown) => thrown as Error);
      expect(error).toMatchObject({ name: ErrorNames.CatalogueUnavailable });
      expect((error as Error).message).toMatch(/the uncatalogued object s3:\/\/.* was deleted/);
    } finally {
      close();
    }
    expect(
      (await stack.s3.listKeys(stack.prefix)).filter((key) => key.includes(resolved.snapshotId)),
    ).toEqual([]);
    expect(await stack.s3.listOpenMultipartUploads()).toEqual([]);
  }, 60_000);

  it("keeps the object when the row's write landed and only its answer was lost", async () => {
    const { catalogue, close } = failingCatalogue(true);
    const resolved = target();
    try {
      const stored = await takeSnapshot(dependencies(catalogue), { cluster: "local" }, "run-2", resolved);
      expect(stored.snapshotId).toBe(resolved.snapshotId);
    } finally {
      close();
    }
    const row = await stack.catalogue.getSnapshot("local", resolved.snapshotId);
    expect(row?.status).toBe("UPLOADED");
    expect(await stack.s3.listKeys(row?.key)).toEqual([row?.key]);
    // The step's retry finds the row UPLOADED and passes on what the upload recorded, the etcd version too.
    const resumed = await takeSnapshot(
      dependencies(stack.catalogue),
      { cluster: "local" },
      "run-2",
      resolved,
    );
    expect(resumed).toMatchObject({ key: row?.key, versionId: row?.versionId, sha256: row?.sha256 });
    expect(resumed.etcdVersion).toMatch(/^3\.\d+\.\d+$/);
    expect(row?.etcdVersion).toBe(resumed.etcdVersion);
  }, 60_000);
});

describe("streamSnapshotToS3 when tagging the finished object fails", () => {
  it("deletes the object, so that nothing remains", async () => {
    const client = createS3Client({ endpoint: stack.s3.endpoint });
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === "PutObjectTaggingCommand") {
          throw Object.assign(new Error("We encountered an internal error"), {
            name: "InternalError",
            $metadata: { httpStatusCode: 500 },
          });
        }
        return next(args);
      },
      { step: "initialize", name: "failTagging" },
    );
    const snapshotId = newSnapshotId(new Date());
    try {
      const source = createGrpcSnapshotSource(
        createEtcdClient({ endpoint: stack.etcd.endpoints[0] as string }),
      );
      const snapshot = await streamSnapshotToS3(source, {
        client,
        bucket: stack.s3.bucket,
        prefix: "tagging",
        cluster: "local",
        snapshotId,
      })
        .catch((thrown: unknown) => thrown as Error)
        .finally(() => source.close());
      expect(snapshot).toMatchObject({
        name: ErrorNames.StorageUnavailable,
        message: expect.stringMatching(/tagging .* failed.*the uncatalogued object .* was deleted/),
      });
    } finally {
      client.destroy();
    }
    expect(await stack.s3.listKeys("tagging/")).toEqual([]);
    expect(await stack.s3.listOpenMultipartUploads()).toEqual([]);
  }, 60_000);
});
