// The stack's SSM Command document for validate-restore's free-space probe: `df` on the paths it is given,
// and nothing else (lambdas/core/restore/free-space-document.ts), so that the function that runs before
// approval may not run arbitrary commands as root on the control-plane nodes.
import { Stack } from "aws-cdk-lib";
import * as ssm from "aws-cdk-lib/aws-ssm";
import type { Construct } from "constructs";
import { freeSpaceDocumentContent } from "../lambdas/core/restore/free-space-document.js";

export interface FreeSpaceDocument {
  /** What SendCommand names (CloudFormation chooses it). */
  name: string;
  arn: string;
}

export function createFreeSpaceDocument(scope: Construct): FreeSpaceDocument {
  const document = new ssm.CfnDocument(scope, "FreeSpaceDocument", {
    documentType: "Command",
    content: freeSpaceDocumentContent(),
  });
  const name = document.ref;
  return {
    name,
    arn: Stack.of(scope).formatArn({ service: "ssm", resource: "document", resourceName: name }),
  };
}
