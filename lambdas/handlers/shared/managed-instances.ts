// The instances Systems Manager manages, as validate-restore reaches them before approval: the node of a
// member named by instanceTag, and the free space on the members' nodes. Apart from the other restore
// dependencies so that only its bundle carries the SSM client.
import { paginateDescribeInstanceInformation, SSMClient } from "@aws-sdk/client-ssm";
import type { InstanceTag, ManagedInstance } from "../../core/restore/agent-instances.js";
import type { MeasureFreeSpace } from "../../core/restore/member-free-space.js";
import { measureFreeSpaceThroughSsm } from "../../core/restore/ssm-free-space.js";
import { readEnvironment } from "./environment.js";

let ssm: SSMClient | undefined;

function ssmClient(): SSMClient {
  ssm ??= new SSMClient({});
  return ssm;
}

/** Every page of them. */
export async function findManagedInstances(tag: InstanceTag, client?: SSMClient): Promise<ManagedInstance[]> {
  const found: ManagedInstance[] = [];
  for await (const page of paginateDescribeInstanceInformation(
    { client: client ?? ssmClient() },
    { Filters: [{ Key: `tag:${tag.key}`, Values: [tag.value] }] },
  )) {
    for (const instance of page.InstanceInformationList ?? []) {
      if (instance.InstanceId)
        found.push({ instanceId: instance.InstanceId, pingStatus: instance.PingStatus });
    }
  }
  return found;
}

/** The ssm executor's free-space probe, through this function's client and the stack's document. */
export const measureFreeSpaceOnInstances: MeasureFreeSpace = async (members) => {
  const documentName = readEnvironment().FREE_SPACE_DOCUMENT;
  // Set only where a target uses the ssm executor; without it the agents check before anything stops.
  if (!documentName) throw new Error("this stack has no free-space document (FREE_SPACE_DOCUMENT)");
  return measureFreeSpaceThroughSsm(ssmClient(), members, { documentName });
};
