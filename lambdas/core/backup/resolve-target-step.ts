// Resolves where this run's snapshot comes from: the target's configuration, the member to read
// (a healthy follower), and the snapshot id, minted once so that retries of the snapshot step reuse it.
// TLS material is looked up again by the step that needs it: secrets never travel through the state
// machine, whose execution history anyone with read access can see.
import { findTarget, type Target } from "../config/target-config.js";
import { InvalidInputError } from "../errors.js";
import { chooseSnapshotMember } from "../etcd/choose-member.js";
import { newSnapshotId } from "../snapshot/snapshot-naming.js";
import type { BackupDependencies } from "./backup-dependencies.js";
import type { ExecutionInput, ResolvedTarget } from "./step-payloads.js";

export async function resolveTarget(
  dependencies: BackupDependencies,
  input: ExecutionInput,
): Promise<ResolvedTarget> {
  const target = findTarget(await dependencies.loadTargets(), input.cluster);
  const endpoints = directEndpoints(target);
  const chosen = await chooseSnapshotMember(endpoints, { tls: await dependencies.loadEtcdTls(target) });
  chosen.client.close();
  dependencies.reporter.info("member chosen", {
    endpoint: chosen.client.endpoint,
    memberId: chosen.status.memberId,
    leader: chosen.status.memberId === chosen.status.leaderId,
    dbSize: chosen.status.dbSize,
  });
  return {
    snapshotId: newSnapshotId(dependencies.now()),
    member: {
      endpoint: chosen.client.endpoint,
      memberId: chosen.status.memberId,
      revision: chosen.status.revision,
    },
  };
}

function directEndpoints(target: Target): string[] {
  if (target.access.kind !== "direct") {
    throw new InvalidInputError(
      `target ${target.name} uses ${target.access.kind} access, which this deployment does not support yet: use access.kind "direct" with etcd.endpoints`,
    );
  }
  if (!target.etcd.endpoints?.length) {
    throw new InvalidInputError(`target ${target.name} has direct access but no etcd.endpoints`);
  }
  return target.etcd.endpoints;
}
