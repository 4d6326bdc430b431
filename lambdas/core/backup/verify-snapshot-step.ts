// The verify state: read the stored object back from S3, prove it sound, check it against what the
// snapshot step streamed and against the members' own HashKV at its revision, and catalogue it VERIFIED.
// A corrupt snapshot is tagged and marked FAILED here, then the error goes on to the state machine's
// failure path (and is never retried).
import { findTarget } from "../config/target-config.js";
import { ErrorNames } from "../errors.js";
import { MetricNames } from "../metric-names.js";
import { lazyMember } from "../snapshot/lazy-member.js";
import {
  allMembersAgreed,
  describeMemberHashCheck,
  type MemberHashCheck,
} from "../snapshot/member-hash-check.js";
import { tagSnapshotObject } from "../snapshot/stream-snapshot.js";
import { verifyStoredSnapshot } from "../snapshot/verify-stored-snapshot.js";
import type { BackupDependencies } from "./backup-dependencies.js";
import { progressLog } from "./progress-log.js";
import {
  describeMemberReach,
  type ExecutionInput,
  type ResolvedTarget,
  type StoredSnapshotPayload,
} from "./step-payloads.js";

export interface VerificationPayload {
  snapshotId: string;
  revision: number;
  totalKey: number;
  liveKeyCount: number;
  hash: number;
  sha256: string;
  memberHash?: MemberHashCheck;
}

export async function verifySnapshot(
  dependencies: BackupDependencies,
  input: ExecutionInput,
  snapshot: StoredSnapshotPayload,
  /** The member the snapshot came from and its peers; absent in executions of an older definition. */
  resolved?: ResolvedTarget,
): Promise<VerificationPayload> {
  const { cluster } = input;
  const object = { bucket: snapshot.bucket, key: snapshot.key, versionId: snapshot.versionId };
  const progress = progressLog(dependencies.reporter, "reading back", () => ({
    snapshotId: snapshot.snapshotId,
  }));
  const target = findTarget(await dependencies.loadTargets(), cluster);
  // The member the snapshot was read from first, then its peers (member-hash-check.ts).
  const members = resolved
    ? [resolved.member, ...(resolved.peers ?? [])].map((reach) =>
        // Reached again the way the snapshot step reached the source, only once the file proved sound;
        // loaded then too, so that the step's cold start evaluates neither gRPC nor the Kubernetes client.
        lazyMember(describeMemberReach(reach), async () => {
          const { openMemberSource } = await import("./member-source.js");
          return openMemberSource(dependencies, target, reach);
        }),
      )
    : [];
  try {
    const verified = await verifyStoredSnapshot(dependencies.s3, object, snapshot, {
      stagingDir: dependencies.stagingDir,
      // Reading back a large snapshot takes minutes: say how far it got, as the snapshot step does.
      onStaged: (bytes, totalBytes) => progress(bytes, totalBytes),
      members,
      memberHashCheck: target.etcd.memberHashCheck,
    });
    const { memberHash } = verified;
    if (memberHash && memberHash.outcome !== "not-compared") {
      // A diverged member is the cluster's fault, not the backup's: it reaches on-call through an alarm.
      dependencies.reporter.metric(
        MetricNames.membersHashMismatched,
        "Count",
        memberHash.diverged?.length ?? 0,
      );
    }
    if (memberHash && !allMembersAgreed(memberHash)) {
      dependencies.reporter.warn("snapshot's HashKV not matched by every member", {
        snapshotId: snapshot.snapshotId,
        memberHash: describeMemberHashCheck(memberHash),
      });
    }
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
      memberHash,
      kvHash: { hash: verified.kvHash, compactRevision: verified.compactRevision ?? -1 },
      etcdVersion: snapshot.etcdVersion,
      verifiedAt: dependencies.now(),
    });
    dependencies.reporter.metric("SnapshotVerified", "Count", 1);
    dependencies.reporter.info("snapshot verified", {
      snapshotId: snapshot.snapshotId,
      revision: verified.snapshotRevision,
      liveKeyCount: verified.liveKeyCount,
      ...(memberHash ? { memberHash: describeMemberHashCheck(memberHash) } : {}),
    });
    return {
      snapshotId: snapshot.snapshotId,
      revision: verified.snapshotRevision,
      totalKey: verified.totalKey,
      liveKeyCount: verified.liveKeyCount,
      hash: verified.hash,
      sha256: verified.sha256,
      ...(memberHash ? { memberHash } : {}),
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
  } finally {
    for (const member of members) member.close();
  }
}
