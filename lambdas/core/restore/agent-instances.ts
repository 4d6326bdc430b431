// The ssm executor's members named by tag rather than instance id (control planes whose nodes are
// replaced): each tag is looked up among the instances Systems Manager manages when the restore is
// validated, before anyone is asked, and must match exactly one.
import { InvalidInputError } from "../errors.js";

export interface InstanceTag {
  key: string;
  value: string;
}

export interface ManagedInstance {
  instanceId: string;
  /** Systems Manager's view of its agent: Online, ConnectionLost, Inactive. */
  pingStatus?: string;
}

/** The managed instances that carry a tag (Systems Manager's DescribeInstanceInformation, by tag). */
export type FindManagedInstances = (tag: InstanceTag) => Promise<ManagedInstance[]>;

/**
 * Each member with an instance tag gets the id of the one instance that carries it; notes say which,
 * and flag an agent Systems Manager does not see online (its command would never run).
 */
export async function resolveAgentInstances<
  M extends { name: string; instanceId?: string; instanceTag?: InstanceTag },
>(
  members: M[],
  findManagedInstances: FindManagedInstances,
): Promise<{ members: Array<Omit<M, "instanceTag"> & { instanceId?: string }>; notes: string[] }> {
  const notes: string[] = [];
  const resolved = [];
  for (const { instanceTag, ...member } of members) {
    if (!instanceTag) {
      resolved.push(member);
      continue;
    }
    const tag = `${instanceTag.key}=${instanceTag.value}`;
    const found = await findManagedInstances(instanceTag);
    if (found.length !== 1) {
      throw new InvalidInputError(
        found.length === 0
          ? `no instance managed by Systems Manager carries the tag ${tag} that names ${member.name}'s node`
          : `${found.length} managed instances carry the tag ${tag} that names ${member.name}'s node (${found.map((instance) => instance.instanceId).join(", ")}): it must name exactly one`,
      );
    }
    const [instance] = found as [ManagedInstance];
    notes.push(
      `${member.name} runs on ${instance.instanceId} (tag ${tag})${instance.pingStatus && instance.pingStatus !== "Online" ? `, whose Systems Manager agent is ${instance.pingStatus}: its command will not run until it is back` : ""}.`,
    );
    resolved.push({ ...member, instanceId: instance.instanceId });
  }
  return { members: resolved, notes };
}
