// A role that an AWS service (EventBridge, EventBridge Scheduler) assumes on this account's behalf only:
// the aws:SourceAccount condition keeps another account's rule or schedule from using it.
import { Stack } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import type { Construct } from "constructs";

export function serviceRole(scope: Construct, id: string, service: string, description: string): iam.Role {
  return new iam.Role(scope, id, {
    assumedBy: new iam.ServicePrincipal(service).withConditions({
      StringEquals: { "aws:SourceAccount": Stack.of(scope).account },
    }),
    description,
  });
}
