// A state machine deployed from one of the statemachine/*.asl.json files, unchanged: the file's
// `${Name}` placeholders are filled by DefinitionSubstitutions, so the file that runs locally is the one
// deployed. Its role may invoke exactly the functions it is given and nothing else; it logs every
// execution and traces with X-Ray. The backup workflow uses it now, the restore workflow later.
import { readFileSync } from "node:fs";
import { Arn, ArnFormat, Stack } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import type * as lambda from "aws-cdk-lib/aws-lambda";
import * as logs from "aws-cdk-lib/aws-logs";
import * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import { acknowledgeWildcardResources } from "./nag-acknowledgements.js";

export interface AslStateMachineProps {
  /** Path of the ASL file. */
  definitionFile: string;
  /** Placeholder name → function; the state machine may invoke these and only these. */
  functions: Record<string, lambda.IFunction>;
  /** Placeholder name → any other value (a topic ARN, a bucket name). */
  values?: Record<string, string>;
  logRetention: logs.RetentionDays;
  /** Lets the role do what the definition's service integrations need (SNS publish, ...). */
  grant?: (role: iam.IRole) => void;
}

/** The `${Name}` placeholders a definition file uses, sorted. */
export function placeholdersIn(definition: string): string[] {
  return [
    ...new Set([...definition.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((match) => match[1] as string)),
  ].sort();
}

export class AslStateMachine extends Construct {
  readonly stateMachine: sfn.StateMachine;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: AslStateMachineProps) {
    super(scope, id);
    const substitutions: Record<string, string> = {
      ...Object.fromEntries(Object.entries(props.functions).map(([name, fn]) => [name, fn.functionArn])),
      ...props.values,
    };
    // A placeholder left unfilled would deploy as literal text and fail only when that state runs.
    const used = placeholdersIn(readFileSync(props.definitionFile, "utf8"));
    const given = Object.keys(substitutions).sort();
    const missing = used.filter((name) => !given.includes(name));
    const unused = given.filter((name) => !used.includes(name));
    if (missing.length > 0 || unused.length > 0) {
      throw new Error(
        `${props.definitionFile}: substitutions do not match the placeholders (missing: ${missing.join(", ") || "none"}; not in the file: ${unused.join(", ") || "none"})`,
      );
    }

    this.role = new iam.Role(this, "Role", { assumedBy: new iam.ServicePrincipal("states.amazonaws.com") });
    const functionArns = Object.values(props.functions).map((fn) => fn.functionArn);
    if (functionArns.length > 0) {
      // The definition names the unqualified ARNs: no version or alias wildcard is needed.
      this.role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ["lambda:InvokeFunction"], resources: functionArns }),
      );
    }
    props.grant?.(this.role);

    this.logGroup = new logs.LogGroup(this, "Logs", { retention: props.logRetention });
    this.stateMachine = new sfn.StateMachine(this, "StateMachine", {
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromFile(props.definitionFile),
      definitionSubstitutions: substitutions,
      role: this.role,
      tracingEnabled: true,
      logs: { destination: this.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: true },
    });
    acknowledgeWildcardResources(
      this,
      ["*"],
      "Step Functions logging and X-Ray: logs:CreateLogDelivery/GetLogDelivery/UpdateLogDelivery/DeleteLogDelivery/ListLogDeliveries/PutResourcePolicy/DescribeResourcePolicies/DescribeLogGroups and xray:PutTraceSegments/PutTelemetryRecords/GetSamplingRules/GetSamplingTargets support no resource-level permissions; AWS documents Resource '*' for them.",
    );
  }
}

/** The ARNs of a state machine's executions (`…:execution:<name>:*`), for following and stopping them. */
export function executionArnsOf(scope: Construct, machine: sfn.IStateMachine): string {
  const name = Arn.split(machine.stateMachineArn, ArnFormat.COLON_RESOURCE_NAME).resourceName;
  return Stack.of(scope).formatArn({
    service: "states",
    resource: "execution",
    resourceName: `${name}:*`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
}
