// The barrier check after etcd restarts and before any API server does: every member healthy and in
// one cluster with one leader, at the catalogued revision (plus the bump) with the catalogued key count.
// Until the API servers start nothing writes to etcd, so both must match exactly.
import { findTarget } from "../config/target-config.js";
import { describeError, EtcdUnavailableError } from "../errors.js";
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
  let keys: { count: number; revision: number } | undefined;
  for (const member of members) {
    const client = createEtcdClient({ endpoint: member.clientUrl, tls, callTimeoutMs: 5000 });
    try {
      statuses.push(await client.status());
      keys ??= await client.countKeys();
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
  const summary = `${statuses.length} member(s) healthy, one leader, revision ${revision}${bump}, ${keys?.count ?? 0} keys`;
  dependencies.reporter.info("etcd healthy after restore", { summary });
  return { healthy: true, summary };
}
