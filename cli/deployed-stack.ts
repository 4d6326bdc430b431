// Against AWS the operator names the stack, not its resources: a flag the user left out (the catalogue
// table, the snapshot bucket, the restore state machine) is read from the deployed stack's outputs.
import { CloudFormationClient, DescribeStacksCommand } from "@aws-sdk/client-cloudformation";
import { type StackOutputName, StackOutputs } from "../infra/stack-outputs.js";
import { InvalidInputError } from "../lambdas/core/errors.js";

export interface StackFlags {
  /** The deployed stack (default `EtcdBackup`). */
  stack: string;
  region?: string;
}

/**
 * The value of each wanted flag: the one given, or else the stack output that names it. The stack is
 * read once, and only when a flag is missing, so explicit flags (and local runs) never reach AWS.
 */
export async function flagsFromStack<Name extends string>(
  flags: StackFlags & Partial<Record<NoInfer<Name>, string>>,
  wanted: Record<Name, StackOutputName>,
): Promise<Record<Name, string>> {
  const names = Object.keys(wanted) as Name[];
  const missing = names.filter((name) => !flags[name]);
  const outputs = missing.length > 0 ? await readStackOutputs(flags) : {};
  return Object.fromEntries(
    names.map((name) => {
      const value = flags[name] ?? outputs[wanted[name]];
      if (!value) {
        throw new InvalidInputError(
          `stack ${flags.stack} has no output ${wanted[name]}: give --${kebab(name)}, or the stack that etcd-backup deployed with --stack`,
        );
      }
      return [name, value];
    }),
  ) as Record<Name, string>;
}

async function readStackOutputs({
  stack,
  region,
}: StackFlags): Promise<Partial<Record<StackOutputName, string>>> {
  const client = new CloudFormationClient(region ? { region } : {});
  try {
    const { Stacks } = await client.send(new DescribeStacksCommand({ StackName: stack }));
    const outputs = Stacks?.[0]?.Outputs ?? [];
    const known = new Set<string>(Object.values(StackOutputs));
    return Object.fromEntries(
      outputs
        .filter((output) => output.OutputKey && known.has(output.OutputKey) && output.OutputValue)
        .map((output) => [output.OutputKey, output.OutputValue]),
    );
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InvalidInputError(
      `could not read the outputs of stack ${stack} (${reason}): check --stack, --region and your AWS credentials, or give the names as flags; for the local stack of \`etcd-backup local up\`, add --local`,
    );
  } finally {
    client.destroy();
  }
}

function kebab(camel: string): string {
  return camel.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}
