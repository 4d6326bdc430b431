// The snapshot state: stream the chosen member's snapshot into S3 and catalogue it IN_PROGRESS, then
// UPLOADED. A retry (same execution, same snapshot id) first aborts what an earlier attempt left open,
// and returns the recorded result if that attempt had in fact finished.
import { SnapshotStatus } from "../catalogue/snapshot-record.js";
import { findTarget } from "../config/target-config.js";
import { snapshotObjectKey } from "../snapshot/snapshot-naming.js";
import { discardAfter, streamSnapshotToS3 } from "../snapshot/stream-snapshot.js";
import { abortOpenUploads } from "../store/abort-open-uploads.js";
import type { BackupDependencies } from "./backup-dependencies.js";
import { openMemberSource } from "./member-source.js";
import { progressLog } from "./progress-log.js";
import {
  describeMemberReach,
  type ExecutionInput,
  type ResolvedTarget,
  type StoredSnapshotPayload,
} from "./step-payloads.js";

export async function takeSnapshot(
  dependencies: BackupDependencies,
  input: ExecutionInput,
  executionArn: string,
  resolved: ResolvedTarget,
): Promise<StoredSnapshotPayload> {
  const { cluster } = input;
  const { snapshotId, member } = resolved;
  const key = snapshotObjectKey(dependencies.prefix, cluster, snapshotId);
  const recorded = await dependencies.catalogue.getSnapshot(cluster, snapshotId);
  if (recorded && recorded.status !== SnapshotStatus.InProgress && recorded.executionArn === executionArn) {
    if (recorded.status === SnapshotStatus.Uploaded || recorded.status === SnapshotStatus.Verified) {
      dependencies.reporter.info("snapshot already uploaded by an earlier attempt", { snapshotId });
      return {
        snapshotId,
        bucket: recorded.bucket,
        key: recorded.key,
        versionId: recorded.versionId,
        bytes: recorded.bytes ?? 0,
        sha256: recorded.sha256 ?? "",
        revisionBefore: member.revision,
        etcdVersion: recorded.etcdVersion ?? "",
        durationMs: recorded.durationMs ?? 0,
      };
    }
  }
  await dependencies.catalogue.recordStarted({
    cluster,
    snapshotId,
    bucket: dependencies.bucket,
    key,
    sourceMember: describeMemberReach(member),
    startedAt: dependencies.now(),
    executionArn,
    tags: input.tags,
  });
  await abortOpenUploads(dependencies.s3, dependencies.bucket, key);

  const target = findTarget(await dependencies.loadTargets(), cluster);
  const source = await openMemberSource(dependencies, target, member);
  const progress = progressLog(dependencies.reporter, "streaming", () => ({ snapshotId }));
  const stored = await streamSnapshotToS3(
    source,
    {
      client: dependencies.s3,
      bucket: dependencies.bucket,
      prefix: dependencies.prefix,
      cluster,
      snapshotId,
      kmsKeyId: dependencies.kmsKeyId,
    },
    {
      onProgress: (bytes) => progress(bytes),
    },
  ).finally(() => source.close());

  await dependencies.catalogue
    .recordUploaded({
      cluster,
      snapshotId,
      versionId: stored.object.versionId,
      bytes: stored.bytes,
      sha256: stored.sha256,
      completedAt: dependencies.now(),
      durationMs: stored.durationMs,
      etcdVersion: stored.etcdVersion,
    })
    .catch(async (error: unknown) => {
      // The write may have landed with only its answer lost: delete the version only when the row
      // positively does not point at it, never one the catalogue may know.
      const row = await dependencies.catalogue.getSnapshot(cluster, snapshotId).catch(() => undefined);
      if (row?.status === SnapshotStatus.Uploaded && row.versionId === stored.object.versionId) return;
      if (row?.status !== SnapshotStatus.InProgress) throw error;
      await discardAfter(error, dependencies.s3, stored.object);
    });
  const { reporter } = dependencies;
  reporter.metric("SnapshotBytes", "Bytes", stored.bytes);
  reporter.metric("SnapshotDuration", "Milliseconds", stored.durationMs);
  reporter.metric(
    "SnapshotThroughput",
    "Bytes/Second",
    stored.bytes / Math.max(stored.durationMs / 1000, 0.001),
  );
  reporter.info("snapshot uploaded", { snapshotId, key, bytes: stored.bytes, durationMs: stored.durationMs });
  return {
    snapshotId,
    bucket: stored.object.bucket,
    key: stored.object.key,
    versionId: stored.object.versionId,
    bytes: stored.bytes,
    sha256: stored.sha256,
    revisionBefore: stored.revisionBefore,
    revisionAfter: stored.revisionAfter,
    etcdVersion: stored.etcdVersion,
    durationMs: stored.durationMs,
  };
}
