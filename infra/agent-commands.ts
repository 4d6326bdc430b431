// Who may run commands on the ssm executor's control-plane nodes: the restore state machine (the agents,
// after approval, through AWS-RunShellScript) and validate-restore (the free-space probe, before it,
// through the stack's df-only document). Each sends its one document to the instances the targets name,
// by id or by tag, and to no other.
import { Stack } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import type { Construct } from "constructs";
import type { Target } from "../lambdas/core/config/target-config.js";
import type { InstanceTag } from "../lambdas/core/restore/agent-instances.js";
import { acknowledgeWildcardResources } from "./nag-acknowledgements.js";

/** The SSM document the StartAgent state sends. */
export const agentDocumentName = "AWS-RunShellScript";

/** The ssm executor's nodes: named by instance id, or by a tag looked up when a restore is validated. */
export interface AgentInstances {
  ids: string[];
  tags: InstanceTag[];
}

export function agentInstancesOf(targets: readonly Target[]): AgentInstances {
  return { ids: agentInstanceIds(targets), tags: agentInstanceTags(targets) };
}

/** The control-plane instances the ssm executor may reach, from the targets' restore layouts. */
export function agentInstanceIds(targets: readonly Target[]): string[] {
  return [
    ...new Set(
      targets.flatMap((target) =>
        target.restore?.executor === "ssm"
          ? target.restore.members.flatMap((member) => (member.instanceId ? [member.instanceId] : []))
          : [],
      ),
    ),
  ].sort();
}

/** The tags that name ssm members' nodes instead of an instance id, each once. */
export function agentInstanceTags(targets: readonly Target[]): InstanceTag[] {
  const tags = targets.flatMap((target) =>
    target.restore?.executor === "ssm"
      ? target.restore.members.flatMap((member) => (member.instanceTag ? [member.instanceTag] : []))
      : [],
  );
  return [...new Map(tags.map((tag) => [`${tag.key}=${tag.value}`, tag])).values()].sort((a, b) =>
    `${a.key}=${a.value}`.localeCompare(`${b.key}=${b.value}`),
  );
}

/**
 * ssm:SendCommand with one document (by default the agents' AWS-RunShellScript), on the named
 * control-plane instances only; and reading the invocations of the commands sent (their status, output).
 */
export function grantAgentCommands(
  scope: Construct,
  role: iam.IRole,
  agents: AgentInstances,
  documentArn?: string,
): void {
  const stack = Stack.of(scope);
  const { ids: instances, tags } = agents;
  if (instances.length === 0 && tags.length === 0) return;
  // An on-premises or hybrid node registered with Systems Manager (mi-…) is a managed-instance resource.
  const instanceArn = (id: string) =>
    id.startsWith("mi-")
      ? stack.formatArn({ service: "ssm", resource: "managed-instance", resourceName: id })
      : stack.formatArn({ service: "ec2", resource: "instance", resourceName: id });
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ["ssm:SendCommand"],
      resources: [
        documentArn ??
          stack.formatArn({
            service: "ssm",
            account: "",
            resource: "document",
            resourceName: agentDocumentName,
          }),
        ...instances.map(instanceArn),
      ],
    }),
  );
  // Nodes named by tag are known only when a restore runs: the command may reach any instance that
  // carries one of those tags, and no other.
  const valuesByKey = new Map<string, string[]>();
  for (const tag of tags) valuesByKey.set(tag.key, [...(valuesByKey.get(tag.key) ?? []), tag.value]);
  const tagged = [instanceArn("*"), instanceArn("mi-*")];
  for (const [key, values] of valuesByKey) {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ["ssm:SendCommand"],
        resources: tagged,
        conditions: { StringEquals: { [`ssm:resourceTag/${key}`]: values } },
      }),
    );
  }
  if (tags.length > 0) {
    acknowledgeWildcardResources(
      scope,
      tagged,
      "Members named by instanceTag: ssm:SendCommand may reach only the instances that carry those tags (ssm:resourceTag condition), which are known when a restore runs.",
    );
  }
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({ actions: ["ssm:GetCommandInvocation"], resources: ["*"] }),
  );
  acknowledgeWildcardResources(
    scope,
    ["*"],
    "ssm:GetCommandInvocation supports no resource-level permissions; it reads the invocations of the commands this role sent.",
  );
}
