// The barrier check after etcd restarts and before any API server does: every member healthy and in
// one cluster with one leader, restored at the catalogued revision (plus the bump) with the catalogued key
// count there, and — where the revision was not bumped — holding the snapshot's content: each member's
// HashKV at the revision equals the snapshot's, as catalogued at verification.
//
// No API server writes until this passes, but etcd itself does: a lease in the snapshot (kube-apiserver's
// /registry/masterleases/ keys live 15 s, Events an hour) is revoked when its TTL runs out after the new
// leader takes over, and each revocation deletes its keys at a new revision. So the revision may have
// moved on, and the key count is read at the restored revision, not now.
import { findTarget } from "../config/target-config.js";
import { describeError, EtcdUnavailableError, SnapshotCorruptError } from "../errors.js";
import { createEtcdClient, type MemberStatus } from "../etcd/etcd-client.js";
import type { RestoreDependencies } from "./restore-dependencies.js";
import type { RestoreInput, RestoreMember, RestoreSnapshot } from "./restore-payloads.js";

interface MemberFindings {
  status: MemberStatus;
  /** The revision the member was restored at: the snapshot's, plus the bump where it was applied. */
  restoredRevision: number;
  /** Keys at the restored revision; undefined when the member is below it. */
  keysThen?: number;
}

export async function checkEtcdHealth(
  dependencies: RestoreDependencies,
  input: RestoreInput,
  snapshot: RestoreSnapshot,
  members: RestoreMember[],
): Promise<{ healthy: true; summary: string; startedAt: string }> {
  // The notice's timings: the health check begins where etcd's start ends (a retry's attempt, when
  // members were still electing: the wait for them counts as etcd's start).
  const startedAt = dependencies.now().toISOString();
  const target = findTarget(await dependencies.loadTargets(), input.cluster);
  const tls = await dependencies.loadEtcdTls(target);
  const bumpedRevision = snapshot.revision + (snapshot.bumpRevision ?? 0);
  // An optional bump was skipped where the node's tool lacks the flag; the bump (a billion) tells which.
  const restoredRevisionOf = (revision: number) =>
    snapshot.revisionBumpOptional && revision < bumpedRevision ? snapshot.revision : bumpedRevision;
  const findings: MemberFindings[] = [];
  const contentProblems: string[] = [];
  let contentCompared = 0;
  for (const member of members) {
    const client = createEtcdClient({ endpoint: member.clientUrl, tls, callTimeoutMs: 5000 });
    try {
      const status = await client.status();
      const restoredRevision = restoredRevisionOf(status.revision);
      const reached = status.revision >= restoredRevision;
      const keysThen = reached ? (await client.countKeys(undefined, restoredRevision)).count : undefined;
      findings.push({ status, restoredRevision, ...(keysThen === undefined ? {} : { keysThen }) });
      // A bump moves every revision (and --mark-compacted compacts there): no HashKV to compare then.
      if (snapshot.kvHash && reached && restoredRevision === snapshot.revision) {
        const answer = await client.hashKV(snapshot.revision);
        if (answer.compactRevision === snapshot.kvHash.compactRevision) {
          contentCompared++;
          if (answer.hash !== snapshot.kvHash.hash) {
            contentProblems.push(
              `member ${member.name}'s HashKV at revision ${snapshot.revision} is ${answer.hash}, the snapshot's ${snapshot.kvHash.hash}: its content is not the snapshot's`,
            );
          }
        }
      }
    } catch (error) {
      throw new EtcdUnavailableError(
        `member ${member.name} is not healthy after the restore: ${describeError(error)}`,
      );
    } finally {
      client.close();
    }
  }
  const statuses = findings.map((finding) => finding.status);
  const problems: string[] = [];
  const leaders = new Set(statuses.map((status) => status.leaderId));
  const clusters = new Set(statuses.map((status) => status.clusterId));
  if (leaders.size !== 1 || leaders.has("0"))
    problems.push(`members disagree on the leader (${[...leaders].join(", ")})`);
  if (clusters.size !== 1)
    problems.push(`members belong to different clusters (${[...clusters].join(", ")})`);
  const restoredRevisions = new Set(findings.map((finding) => finding.restoredRevision));
  if (restoredRevisions.size > 1) {
    problems.push(
      `members were restored at different revisions (${findings.map(({ status }) => `${status.endpoint} at ${status.revision}`).join(", ")})`,
    );
  }
  for (const { status, restoredRevision, keysThen } of findings) {
    if (status.errors.length > 0) problems.push(`${status.endpoint} reports ${status.errors.join("; ")}`);
    if (keysThen === undefined) {
      const expected = snapshot.revisionBumpOptional
        ? `${bumpedRevision} or ${snapshot.revision}`
        : `${bumpedRevision}`;
      problems.push(`${status.endpoint} is at revision ${status.revision}, expected ${expected} or later`);
    } else if (keysThen !== snapshot.liveKeyCount) {
      problems.push(
        `${status.endpoint} held ${keysThen} keys at revision ${restoredRevision}, the snapshot ${snapshot.liveKeyCount}`,
      );
    }
  }
  // A target that only reports HashKV mismatches (memberHashCheck `report`) keeps the restore, and says so.
  const enforceContent = target.etcd.memberHashCheck !== "report";
  if (enforceContent && problems.length === 0 && contentProblems.length > 0) {
    // Every member is up at the snapshot's revision with its key count, and holds other data: no retry
    // changes that, so the restore rolls back at once.
    throw new SnapshotCorruptError(`etcd is not as restored: ${contentProblems.join("; ")}`);
  }
  if (enforceContent) problems.push(...contentProblems);
  if (problems.length > 0) {
    // Retried a few times by the state machine (members may still be electing), then rolled back.
    throw new EtcdUnavailableError(`etcd is not as restored: ${problems.join("; ")}`);
  }
  const restoredRevision = findings[0]?.restoredRevision ?? bumpedRevision;
  const bump =
    snapshot.bumpRevision === undefined
      ? ""
      : restoredRevision === bumpedRevision
        ? ` (the snapshot's ${snapshot.revision}, bumped by ${snapshot.bumpRevision})`
        : " (NOT bumped: the restore tool has no --bump-revision; restart every Kubernetes client)";
  const latest = Math.max(...statuses.map((status) => status.revision));
  const since =
    latest > restoredRevision
      ? `; now at revision ${latest}: ${latest - restoredRevision} revision(s) written since, as etcd expires the snapshot's leases`
      : "";
  const content =
    contentProblems.length > 0
      ? `; content NOT as the snapshot's, reported as memberHashCheck asks: ${contentProblems.join("; ")}`
      : contentCompared === statuses.length && statuses.length > 0
        ? ", content as the snapshot's (HashKV)"
        : "";
  if (contentProblems.length > 0)
    dependencies.reporter.warn("restored content not as the snapshot's", { contentProblems });
  const summary = `${statuses.length} member(s) healthy, one leader, revision ${restoredRevision}${bump}, ${snapshot.liveKeyCount} keys${content}${since}`;
  dependencies.reporter.info("etcd healthy after restore", { summary });
  return { healthy: true, summary, startedAt };
}
