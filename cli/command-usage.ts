// How commander presents a command's usage: its required options marked in --help and in the usage line
// (commander lists them as any other option), and a usage error on one line that says what to do, as
// every other error of the CLI is.
import { type Command, Help, type Option } from "commander";

const defaultHelp = new Help();

/** Help settings for the program; every command made from it afterwards inherits them. */
export const helpConfiguration = {
  showGlobalOptions: true,
  optionDescription: (option: Option): string => {
    const description = defaultHelp.optionDescription(option);
    return option.mandatory ? `${description} (required)` : description;
  },
};

/** Call once every command is defined: each names its required options in its usage and its errors. */
export function describeUsage(program: Command): void {
  for (const command of withSubcommands(program)) {
    const required = command.options.filter((option) => option.mandatory);
    if (required.length > 0)
      command.usage([...required.map((option) => option.flags), command.usage()].join(" "));
    const help = ["etcd-backup", ...commandPath(command), "--help"].join(" ");
    command.configureOutput({
      outputError: (message, write) =>
        write(`etcd-backup: ${describeUsageError(command, message.trim())} (see ${help})\n`),
    });
  }
}

/**
 * Commander's message on one line (it puts "Did you mean …?" on a second) without its `error: `; for a
 * missing required option, what the option is for.
 */
function describeUsageError(command: Command, message: string): string {
  const text = message.replace(/^error:\s*/, "").replace(/\s*\n\s*/g, " ");
  const flags = /^required option '(.+)' not specified$/.exec(text)?.[1];
  const option = command.options.find((candidate) => candidate.flags === flags);
  if (!option) return text;
  const name = commandPath(command).join(" ");
  return `${name} needs ${option.flags}${option.description ? `: ${option.description}` : ""}`;
}

function commandPath(command: Command): string[] {
  const names: string[] = [];
  for (let current: Command | null = command; current?.parent; current = current.parent)
    names.unshift(current.name());
  return names;
}

function withSubcommands(command: Command): Command[] {
  return [command, ...command.commands.flatMap(withSubcommands)];
}
