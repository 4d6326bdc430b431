// cdk-nag 3 acknowledges multi-finding rules one finding at a time, by the finding's exact id. For IAM5
// the id embeds the resource as cdk-nag flattens it (`<LogicalId.Arn>/prefix/*`), so it is computed here
// from the same token the policy uses rather than written out by hand.
import { Stack, Validations } from "aws-cdk-lib";
import type { IConstruct } from "constructs";

/** Acknowledges AwsSolutions-IAM5 for each resource that contains a wildcard, with the reason given. */
export function acknowledgeWildcardResources(
  scope: IConstruct,
  resources: readonly string[],
  reason: string,
): void {
  const stack = Stack.of(scope);
  for (const resource of resources) {
    const flattened = flattenReference(stack.resolve(resource));
    if (!flattened.includes("*")) continue;
    Validations.of(scope).acknowledge({ id: `AwsSolutions-IAM5[Resource::${flattened}]`, reason });
  }
}

/** Acknowledges AwsSolutions-IAM5 for wildcard actions (e.g. `xray:Put*` added by a CDK construct). */
export function acknowledgeWildcardActions(
  scope: IConstruct,
  actions: readonly string[],
  reason: string,
): void {
  for (const action of actions) {
    Validations.of(scope).acknowledge({ id: `AwsSolutions-IAM5[Action::${action}]`, reason });
  }
}

/** The flattening cdk-nag applies to a resolved CloudFormation value (utils/flatten-cfn-reference). */
export function flattenReference(node: unknown): string {
  if (node === undefined) return "";
  if (typeof node === "string") return node.replace(/\$\{/g, "<").replace(/\}/g, ">");
  if (typeof node === "object" && node !== null) {
    const value = node as Record<string, unknown>;
    if (Array.isArray(value["Fn::Join"])) {
      const [delimiter, items] = value["Fn::Join"] as [string, unknown[]];
      return items.map(flattenReference).join(delimiter);
    }
    if (value["Fn::Sub"] !== undefined) return flattenReference(value["Fn::Sub"]);
    if (Array.isArray(value["Fn::GetAtt"])) {
      const [resource, attribute] = value["Fn::GetAtt"] as [unknown, unknown];
      return `<${flattenReference(resource)}.${flattenReference(attribute)}>`;
    }
    if (value["Fn::ImportValue"] !== undefined) return flattenReference(value["Fn::ImportValue"]);
    if (value.Ref !== undefined) return `<${flattenReference(value.Ref)}>`;
  }
  return JSON.stringify(node);
}
