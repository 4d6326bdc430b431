// The instances Systems Manager manages that carry a tag: how validate-restore finds the node of a member
// named by instanceTag. Apart from the other restore dependencies so that only its bundle carries the SSM
// client.
import { paginateDescribeInstanceInformation, SSMClient } from "@aws-sdk/client-ssm";
import type { InstanceTag, ManagedInstance } from "../../core/restore/agent-instances.js";

let ssm: SSMClient | undefined;

/** Every page of them. */
export async function findManagedInstances(tag: InstanceTag, client?: SSMClient): Promise<ManagedInstance[]> {
  let ssmClient = client;
  if (!ssmClient) {
    ssm ??= new SSMClient({});
    ssmClient = ssm;
  }
  const found: ManagedInstance[] = [];
  for await (const page of paginateDescribeInstanceInformation(
    { client: ssmClient },
    { Filters: [{ Key: `tag:${tag.key}`, Values: [tag.value] }] },
  )) {
    for (const instance of page.InstanceInformationList ?? []) {
      if (instance.InstanceId)
        found.push({ instanceId: instance.InstanceId, pingStatus: instance.PingStatus });
    }
  }
  return found;
}
