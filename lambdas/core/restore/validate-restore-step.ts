// The first restore state: refuse anything unsafe before a person is asked to approve it.
import { SnapshotStatus } from "../catalogue/snapshot-record.js";
import { apiServerReadyUrlOf, findTarget, type RestoreLayout } from "../config/target-config.js";
import { describeError, EtcdUnavailableError, InvalidInputError, SnapshotNotFoundError } from "../errors.js";
import { chooseSnapshotMember } from "../etcd/choose-member.js";
import { describeMemberHashCheck } from "../snapshot/member-hash-check.js";
import { clusterIdMetadataKey } from "../snapshot/stream-snapshot.js";
import { type FindManagedInstances, resolveAgentInstances } from "./agent-instances.js";
import { checkMembership } from "./check-membership.js";
import { checkMembersFreeSpace, type FreeSpaceProbes } from "./member-free-space.js";
import type { RestoreDependencies } from "./restore-dependencies.js";
import type { RestoreInput, RestoreMember, RestoreSnapshot } from "./restore-payloads.js";
import { restoreWorkSeconds } from "./restore-timeouts.js";
import { checkStoredObject } from "./stored-snapshot-object.js";

/** What etcdutl's --bump-revision adds; Kubernetes' documentation suggests a billion. */
export const revisionBump = 1_000_000_000;

export interface ValidatedRestore {
  snapshot: RestoreSnapshot;
  members: RestoreMember[];
  summary: string;
  pollSeconds: number;
  approvalTimeoutSeconds: number;
}

/** How validation reaches the members' nodes before approval. */
export interface MemberNodes {
  findManagedInstances: FindManagedInstances;
  measureFreeSpace: FreeSpaceProbes;
}

export async function validateRestore(
  dependencies: RestoreDependencies,
  input: RestoreInput,
  executionArn: string,
  nodes: MemberNodes,
): Promise<ValidatedRestore> {
  const target = findTarget(await dependencies.loadTargets(), input.cluster);
  const layout: RestoreLayout | undefined = target.restore;
  if (!layout) {
    throw new InvalidInputError(
      `target ${target.name} has no restore layout (restore.members): it is backed up but not restored`,
    );
  }
  const sourceCluster = input.sourceCluster ?? input.cluster;
  if (sourceCluster !== input.cluster && !input.allowCrossCluster) {
    throw new InvalidInputError(
      `snapshot ${input.snapshotId} belongs to cluster ${sourceCluster}, not ${input.cluster}: set allowCrossCluster (CLI --allow-cross-cluster) to restore it here`,
    );
  }
  const row = await dependencies.catalogue.getSnapshot(sourceCluster, input.snapshotId);
  if (!row)
    throw new SnapshotNotFoundError(
      `cluster ${sourceCluster} has no snapshot ${input.snapshotId} in the catalogue`,
    );
  if (row.status !== SnapshotStatus.Verified || row.sha256 === undefined || row.revision === undefined) {
    throw new InvalidInputError(
      `snapshot ${input.snapshotId} is ${row.status}: only a VERIFIED snapshot can be restored`,
    );
  }
  // Scheduled backups go on pruning while approvers think it over: retention keeps this snapshot until
  // the restore could have ended. Once the restore holds the cluster's lease no prune runs at all. Held
  // before the object is checked, so that a prune that got there first shows here, before anyone is asked.
  await dependencies.catalogue.holdForRestore({
    cluster: sourceCluster,
    snapshotId: input.snapshotId,
    execution: executionArn,
    until: new Date(
      dependencies.now().getTime() + (layout.approvalTimeoutSeconds + restoreWorkSeconds) * 1000,
    ),
  });
  const stored = await checkStoredObject(dependencies, row);

  // The running etcd's members must be the configured ones (check-membership.ts); a snapshot of another
  // etcd cluster (another cluster id) is refused, unless asked for: a mix-up of clusters is the mistake
  // this catches. When etcd is down (the disaster case) neither can be checked.
  const notes: string[] = [];
  try {
    const live = await chooseSnapshotMember(
      layout.members.map((member) => member.clientUrl),
      { tls: await dependencies.loadEtcdTls(target), callTimeoutMs: 3000 },
    );
    const liveMembers = await live.client.memberList().finally(() => live.client.close());
    checkMembership(input.cluster, layout.members, liveMembers);
    notes.push(...(await checkClusterLineage(dependencies, input, stored.metadata, live.status.clusterId)));
  } catch (error) {
    if (error instanceof InvalidInputError) throw error;
    // The health check at the barrier reaches the members the same way, while the Kubernetes API is down:
    // found now, before anyone is asked, rather than as a rollback after every member was restored.
    if (!input.skipSafetySnapshot) {
      throw new EtcdUnavailableError(
        `etcd did not answer the restore at ${layout.members.map((member) => member.clientUrl).join(", ")} (${describeError(error)}). If etcd is down (the disaster case), restore with skipSafetySnapshot (CLI --skip-safety-snapshot); otherwise give the restore functions a route to every member's clientUrl (the vpc setting): the health check needs it while the API servers are stopped`,
      );
    }
    notes.push(
      `etcd did not answer (${describeError(error)}): the snapshot's cluster id could not be compared`,
    );
  }

  // Which tools have --bump-revision is known only on the nodes (etcdutl gained it in a 3.5 release, and
  // some etcdctl 3.4 releases carry a backport): the agents check at prepare, before anything stops.
  if (layout.restoreTool === "etcdctl" && !input.allowWithoutRevisionBump) {
    throw new InvalidInputError(
      `${layout.restoreTool} cannot bump revisions at restore, so Kubernetes watchers could miss changes: use etcdutl (etcd 3.5.x with the backport, or 3.6), or set allowWithoutRevisionBump (CLI --allow-without-revision-bump; see docs/restore.md)`,
    );
  }
  const readiness = apiReadinessNote(layout);
  if (readiness) notes.push(readiness);
  if (input.allowWithoutRevisionBump)
    notes.push(
      "allowWithoutRevisionBump: revisions are bumped where the restore tool has --bump-revision, and restored WITHOUT a bump where it has not: then restart every Kubernetes client",
    );

  const snapshot: RestoreSnapshot = {
    sourceCluster,
    snapshotId: row.snapshotId,
    bucket: row.bucket,
    key: row.key,
    versionId: row.versionId,
    sha256: row.sha256,
    bytes: row.bytes ?? stored.bytes,
    revision: row.revision,
    liveKeyCount: row.liveKeyCount ?? 0,
    ...(row.kvHash ? { kvHash: row.kvHash } : {}),
    etcdVersion: row.etcdVersion,
    bumpRevision: revisionBump,
    ...(input.allowWithoutRevisionBump ? { revisionBumpOptional: true } : {}),
  };
  // Checked last: a missing tag is found after the cheaper refusals, and still before anyone is asked;
  // then the nodes themselves, the slowest to answer.
  const agents = await resolveAgentInstances(layout.members, nodes.findManagedInstances);
  notes.push(...agents.notes);
  notes.push(
    await checkMembersFreeSpace(
      layout.executor,
      agents.members,
      snapshot.bytes,
      nodes.measureFreeSpace,
      dependencies.reporter,
    ),
  );
  const summary = [
    `Restore etcd cluster "${input.cluster}" from snapshot ${snapshot.snapshotId}${sourceCluster !== input.cluster ? ` of cluster "${sourceCluster}"` : ""}.`,
    `Taken: ${row.startedAt}; revision ${snapshot.revision}; ${snapshot.liveKeyCount} keys; ${snapshot.bytes} bytes; sha256 ${snapshot.sha256}.`,
    // What the members said of it when it was verified: the approver's best evidence that it is sound.
    ...(row.memberHash ? [`Members' HashKV at backup: ${describeMemberHashCheck(row.memberHash)}.`] : []),
    `Members: ${layout.members.map((member) => member.name).join(", ")} (every one is stopped and restored; the API servers are down meanwhile).`,
    input.skipSafetySnapshot
      ? "A safety snapshot of the current state is tried first; if it cannot be taken, the restore goes on without one (skipSafetySnapshot) and cannot be undone."
      : "A safety snapshot of the current state is taken first; if it cannot be, nothing is changed.",
    ...notes,
  ].join("\n");
  return {
    snapshot,
    members: agents.members,
    summary,
    pollSeconds: layout.pollSeconds,
    approvalTimeoutSeconds: layout.approvalTimeoutSeconds,
  };
}

/**
 * Whether the live etcd is the one this snapshot came from. etcd derives its cluster id from the
 * cluster token, and every restore starts a new token, so the id changes at each restore: a snapshot
 * taken before the last restore carries the old one. The live etcd is still this cluster's when the
 * newest verified snapshot of this cluster came from it (backups ran since the restore); right after a
 * restore, before any backup, only the operator can say so (allowClusterIdChange).
 */
async function checkClusterLineage(
  dependencies: RestoreDependencies,
  input: RestoreInput,
  snapshotMetadata: Record<string, string>,
  liveClusterId: string,
): Promise<string[]> {
  const snapshotClusterId = snapshotMetadata[clusterIdMetadataKey];
  if (!snapshotClusterId || snapshotClusterId === liveClusterId || input.allowCrossCluster) return [];
  const changed = `etcd's cluster id changed since this snapshot (${snapshotClusterId}, now ${liveClusterId})`;
  if (input.allowClusterIdChange) return [`${changed}; restoring anyway (allowClusterIdChange).`];
  const newest = await dependencies.catalogue.findLatestVerified(input.cluster);
  const newestClusterId = newest
    ? (await checkStoredObject(dependencies, newest).catch(() => undefined))?.metadata[clusterIdMetadataKey]
    : undefined;
  if (newestClusterId === liveClusterId) {
    return [
      `${changed}, as a restore changes it; the newest snapshot of ${input.cluster} (${newest?.snapshotId}) comes from the etcd running now.`,
    ];
  }
  throw new InvalidInputError(
    `snapshot ${input.snapshotId} was taken from etcd cluster id ${snapshotClusterId}, but ${input.cluster}'s etcd is ${liveClusterId}, and no snapshot of ${input.cluster} comes from it yet. A restore changes the id: if ${input.cluster} was restored since, set allowClusterIdChange (CLI --allow-cluster-id-change); if the snapshot is another cluster's, allowCrossCluster (CLI --allow-cross-cluster)`,
  );
}

/** For the approvers: the members whose API servers the restore will not see ready before it ends. */
export function apiReadinessNote(layout: {
  apiServerManifest?: string;
  apiServerReadyUrl?: string;
  members: Array<{ name: string; apiServerReadyUrl?: string }>;
}): string | undefined {
  if (!layout.apiServerManifest) return undefined;
  const unchecked = layout.members.filter((member) => apiServerReadyUrlOf(layout, member) === "none");
  if (unchecked.length === 0) return undefined;
  return `API readiness will not be checked on ${unchecked.map((member) => member.name).join(", ")} (apiServerReadyUrl is none): the restore ends once etcd is healthy and the API servers' manifests are back`;
}
