// The verify state: read the stored object back from S3, prove it sound, check it against what the
// snapshot step streamed, and catalogue it VERIFIED. A corrupt snapshot is tagged and marked FAILED here,
// then the error goes on to the state machine's failure path (and is never retried).
import { ErrorNames } from "../errors.js";
import { tagSnapshotObject } from "../snapshot/stream-snapshot.js";
import { verifyStoredSnapshot } from "../snapshot/verify-stored-snapshot.js";
import type { BackupDependencies } from "./backup-dependencies.js";
import { progressLog } from "./progress-log.js";
import type { ExecutionInput, StoredSnapshotPayload } from "./step-payloads.js";

export interface VerificationPayload {
  snapshotId: string;
  revision: number;
  totalKey: number;
  liveKeyCount: number;
  hash: number;
  sha256: string;
}

export async function verifySnapshot(
  dependencies: BackupDependencies,
  input: ExecutionInput,
  snapshot: StoredSnapshotPayload,
): Promise<VerificationPayload> {
  const { cluster } = input;
  const object = { bucket: snapshot.bucket, key: snapshot.key, versionId: snapshot.versionId };
  const progress = progressLog(dependencies.reporter, "reading back", () => ({
    snapshotId: snapshot.snapshotId,
  }));
  try {
    const verified = await verifyStoredSnapshot(dependencies.s3, object, snapshot, {
      stagingDir: dependencies.stagingDir,
      // Reading back a large snapshot takes minutes: say how far it got, as the snapshot step does.
      onStaged: (bytes, totalBytes) => progress(bytes, totalBytes),
    });
    await tagSnapshotObject(dependencies.s3, object, {
      sha256: verified.sha256,
      revision: String(verified.snapshotRevision),
      "etcd-backup-status": "verified",
    });
    await dependencies.catalogue.recordVerified({
      cluster,
      snapshotId: snapshot.snapshotId,
      sha256: verified.sha256,
      revision: verified.snapshotRevision,
      totalKey: verified.totalKey,
      liveKeyCount: verified.liveKeyCount,
      etcdVersion: snapshot.etcdVersion,
      verifiedAt: dependencies.now(),
    });
    dependencies.reporter.metric("SnapshotVerified", "Count", 1);
    dependencies.reporter.info("snapshot verified", {
      snapshotId: snapshot.snapshotId,
      revision: verified.snapshotRevision,
      liveKeyCount: verified.liveKeyCount,
    });
    return {
      snapshotId: snapshot.snapshotId,
      revision: verified.snapshotRevision,
      totalKey: verified.totalKey,
      liveKeyCount: verified.liveKeyCount,
      hash: verified.hash,
      sha256: verified.sha256,
    };
  } catch (error) {
    if ((error as Error).name === ErrorNames.SnapshotCorrupt) {
      dependencies.reporter.metric("SnapshotVerificationFailed", "Count", 1);
      await tagSnapshotObject(dependencies.s3, object, {
        sha256: snapshot.sha256,
        "etcd-backup-status": "corrupt",
      }).catch(() => undefined);
      await dependencies.catalogue.recordFailed({
        cluster,
        snapshotId: snapshot.snapshotId,
        errorName: ErrorNames.SnapshotCorrupt,
        message: (error as Error).message,
        failedAt: dependencies.now(),
      });
    }
    throw error;
  }
}
