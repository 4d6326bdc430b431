// The validated targets file, deployed as one SSM parameter that the handlers read at cold start.
import { Stack } from "aws-cdk-lib";
import * as ssm from "aws-cdk-lib/aws-ssm";
import { Construct } from "constructs";
import type { TargetsFile } from "../lambdas/core/config/target-config.js";

/** SSM's limits: 4 KB for a Standard parameter, 8 KB for an Advanced one. */
export const standardParameterLimit = 4096;
export const advancedParameterLimit = 8192;

export class TargetsParameter extends Construct {
  readonly parameter: ssm.StringParameter;

  constructor(scope: Construct, id: string, props: { targets: TargetsFile }) {
    super(scope, id);
    // The parsed file (defaults filled in) is what the handlers parse again: the same schema, the same result.
    const value = JSON.stringify(props.targets);
    const bytes = Buffer.byteLength(value, "utf8");
    if (bytes > advancedParameterLimit) {
      throw new Error(
        `the targets file is ${bytes} bytes once normalised; an SSM parameter holds at most ${advancedParameterLimit}: split the targets over several stacks`,
      );
    }
    this.parameter = new ssm.StringParameter(this, "Parameter", {
      parameterName: `/${Stack.of(this).stackName}/targets`,
      description: "etcd-backup: the targets file (validated), read by the backup Lambda functions",
      stringValue: value,
      tier: bytes > standardParameterLimit ? ssm.ParameterTier.ADVANCED : ssm.ParameterTier.STANDARD,
    });
  }
}
