// Records one CLI snapshot's progress in the catalogue table, when `--table` is given.
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { describeError } from "../../lambdas/core/errors.js";
import type { StreamedSnapshot } from "../../lambdas/core/snapshot/stream-snapshot.js";
import type { VerifiedSnapshot } from "../../lambdas/core/snapshot/verify-stored-snapshot.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";

export interface CatalogueFlags {
  table?: string;
  dynamodbEndpoint?: string;
  region?: string;
}

export async function openCatalogueRecorder(
  flags: CatalogueFlags,
  ids: { cluster: string; snapshotId: string },
) {
  if (!flags.table) return undefined;
  const client = createDynamoDbClient({ endpoint: flags.dynamodbEndpoint, region: flags.region });
  // A local stand-in starts empty; on AWS the stack owns the table and it is never created here.
  if (flags.dynamodbEndpoint) await createCatalogueTable(client, flags.table);
  const repository = new CatalogueRepository({ client, tableName: flags.table });
  return {
    async started(location: { bucket: string; key: string; sourceMember: string }) {
      await repository.recordStarted({ ...ids, ...location, startedAt: new Date() });
    },
    async uploaded(streamed: StreamedSnapshot, versionId: string | undefined) {
      await repository.recordUploaded({
        ...ids,
        versionId,
        bytes: streamed.bytes,
        sha256: streamed.sha256,
        completedAt: new Date(),
        durationMs: streamed.durationMs,
      });
    },
    async verified(report: VerifiedSnapshot) {
      await repository.recordVerified({
        ...ids,
        sha256: report.sha256,
        revision: report.snapshotRevision,
        totalKey: report.totalKey,
        liveKeyCount: report.liveKeyCount,
        memberHash: report.memberHash,
        kvHash: { hash: report.kvHash, compactRevision: report.compactRevision ?? -1 },
        verifiedAt: new Date(),
      });
    },
    /** Marks the row FAILED; a failure to do so must not hide the original error. */
    async failed(error: unknown) {
      await repository
        .recordFailed({
          ...ids,
          errorName: (error as { name?: string }).name ?? "Error",
          message: describeError(error),
          failedAt: new Date(),
        })
        .catch(() => undefined);
    },
    close() {
      client.destroy();
    },
  };
}
