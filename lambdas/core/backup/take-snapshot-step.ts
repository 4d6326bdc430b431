// The snapshot state: stream the chosen member's snapshot into S3 and catalogue it IN_PROGRESS, then
// UPLOADED. A retry (same execution, same snapshot id) first aborts what an earlier attempt left open,
// and returns the recorded result if that attempt had in fact finished.
import { SnapshotStatus } from "../catalogue/snapshot-record.js";
import { findTarget, type Target } from "../config/target-config.js";
import { createEtcdClient } from "../etcd/etcd-client.js";
import { createGrpcSnapshotSource } from "../etcd/grpc-snapshot-source.js";
import { loadKubeConfig } from "../kube/step-kube-config.js";
import { snapshotObjectKey } from "../snapshot/snapshot-naming.js";
import type { SnapshotSource } from "../snapshot/snapshot-source.js";
import { discardAfter, streamSnapshotToS3 } from "../snapshot/stream-snapshot.js";
import { abortOpenUploads } from "../store/abort-open-uploads.js";
import type { BackupDependencies } from "./backup-dependencies.js";
import { progressLog } from "./progress-log.js";
import { kubernetesSourceSettings } from "./resolve-target-step.js";
import type { ExecutionInput, ResolvedTarget, StoredSnapshotPayload } from "./step-payloads.js";

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
    sourceMember: member.pod
      ? `pod ${member.pod.namespace}/${member.pod.name} (${member.source ?? "grpc"})`
      : member.endpoint,
    startedAt: dependencies.now(),
    executionArn,
    tags: input.tags,
  });
  await abortOpenUploads(dependencies.s3, dependencies.bucket, key);

  const target = findTarget(await dependencies.loadTargets(), cluster);
  const source = await openSnapshotSource(dependencies, target, member);
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

/**
 * The chosen member's source: gRPC to its endpoint (direct access), or through the Kubernetes API to its
 * pod, read again so that a retry sees the pod as it is now — exec (etcdctl in the pod) or grpc through
 * a port-forward, as the target says.
 */
async function openSnapshotSource(
  dependencies: BackupDependencies,
  target: Target,
  member: ResolvedTarget["member"],
): Promise<SnapshotSource> {
  if (!member.pod) {
    const client = createEtcdClient({
      endpoint: member.endpoint,
      tls: await dependencies.loadEtcdTls(target),
    });
    return createGrpcSnapshotSource(client);
  }
  const config = await loadKubeConfig(dependencies, target);
  // Loaded here, not at import: a direct target's cold start need not evaluate the Kubernetes client.
  const { openMemberSnapshotSource, readMemberPod } = await import("../kube/kubernetes-member-source.js");
  const pod = await readMemberPod(config, member.pod);
  const settings = await kubernetesSourceSettings(dependencies, target);
  return openMemberSnapshotSource(config, pod, { ...settings, source: member.source ?? settings.source });
}
