// The barrier check after etcd restarts and before any API server does: every member healthy and in
// one cluster with one leader, at the catalogued revision (plus the bump) with the catalogued key count,
// and — where the revision was not bumped — holding the snapshot's content: each member's HashKV at the
// revision equals the snapshot's, as catalogued at verification. Until the API servers start nothing
// writes to etcd, so all must match exactly.
import { findTarget } from "../config/target-config.js";
import { describeError, EtcdUnavailableError, SnapshotCorruptError } from "../errors.js";
import { createEtcdClient, type MemberStatus } from "../etcd/etcd-client.js";
import type { RestoreDependencies } from "./restore-dependencies.js";
import type { RestoreInput, RestoreMember, RestoreSnapshot } from "./restore-payloads.js";

export async function checkEtcdHealth(
  dependencies: RestoreDependencies,
  input: RestoreInput,
  snapshot: RestoreSnapshot,
  members: RestoreMember[],
): Promise<{ healthy: true; summary: string }> {
  const target = findTarget(await dependencies.loadTargets(), input.cluster);
  const tls = await dependencies.loadEtcdTls(target);
  const statuses: MemberStatus[] = [];
  const contentProblems: string[] = [];
  let contentCompared = 0;
  let keys: { count: number; revision: number } | undefined;
  for (const member of members) {
    const client = createEtcdClient({ endpoint: member.clientUrl, tls, callTimeoutMs: 5000 });
    try {
      const status = await client.status();
      statuses.push(status);
      keys ??= await client.countKeys();
      // A bump moves every revision (and --mark-compacted compacts there): no HashKV to compare then.
      if (snapshot.kvHash && status.revision === snapshot.revision) {
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
  const problems: string[] = [];
  const leaders = new Set(statuses.map((status) => status.leaderId));
  const clusters = new Set(statuses.map((status) => status.clusterId));
  if (leaders.size !== 1 || leaders.has("0"))
    problems.push(`members disagree on the leader (${[...leaders].join(", ")})`);
  if (clusters.size !== 1)
    problems.push(`members belong to different clusters (${[...clusters].join(", ")})`);
  const bumpedRevision = snapshot.revision + (snapshot.bumpRevision ?? 0);
  // An optional bump was skipped where the node's tool lacks the flag; every member must still agree.
  const expected = snapshot.revisionBumpOptional ? [bumpedRevision, snapshot.revision] : [bumpedRevision];
  const revisions = new Set(statuses.map((status) => status.revision));
  if (revisions.size > 1) problems.push(`members disagree on the revision (${[...revisions].join(", ")})`);
  for (const status of statuses) {
    if (status.errors.length > 0) problems.push(`${status.endpoint} reports ${status.errors.join("; ")}`);
    if (!expected.includes(status.revision)) {
      problems.push(
        `${status.endpoint} is at revision ${status.revision}, expected ${expected.join(" or ")}`,
      );
    }
  }
  if (keys && keys.count !== snapshot.liveKeyCount) {
    problems.push(`etcd holds ${keys.count} keys, the snapshot ${snapshot.liveKeyCount}`);
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
  const revision = statuses[0]?.revision ?? bumpedRevision;
  const bump =
    snapshot.bumpRevision === undefined
      ? ""
      : revision === bumpedRevision
        ? ` (the snapshot's ${snapshot.revision}, bumped by ${snapshot.bumpRevision})`
        : " (NOT bumped: the restore tool has no --bump-revision; restart every Kubernetes client)";
  const content =
    contentProblems.length > 0
      ? `; content NOT as the snapshot's, reported as memberHashCheck asks: ${contentProblems.join("; ")}`
      : contentCompared === statuses.length && statuses.length > 0
        ? ", content as the snapshot's (HashKV)"
        : "";
  if (contentProblems.length > 0)
    dependencies.reporter.warn("restored content not as the snapshot's", { contentProblems });
  const summary = `${statuses.length} member(s) healthy, one leader, revision ${revision}${bump}, ${keys?.count ?? 0} keys${content}`;
  dependencies.reporter.info("etcd healthy after restore", { summary });
  return { healthy: true, summary };
}
