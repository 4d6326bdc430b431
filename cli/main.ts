// The `etcd-backup` command line: one program, one subcommand per task.
import { Command, CommanderError, Option } from "commander";
import { runSnapshotCommand } from "./commands/snapshot-command.js";
import { runVerifyCommand } from "./commands/verify-command.js";
import { ExitCodes, exitCodeFor } from "./exit-codes.js";
import { printError } from "./terminal-output.js";

export async function runCli(argv: string[]): Promise<number> {
  const program = new Command("etcd-backup")
    .description("Stream, verify, catalogue and restore etcd snapshots")
    .option("--debug", "show stack traces on errors")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  let outcome: Promise<unknown> = Promise.resolve();

  program
    .command("snapshot")
    .description(
      "Stream one snapshot from etcd to a file or S3, verify it, and catalogue it when --table is given",
    )
    .requiredOption("--endpoints <urls>", "etcd client URLs, comma-separated (a healthy follower is chosen)")
    .requiredOption("--to <destination>", "FILE, or s3://BUCKET/PREFIX")
    .option("--cacert <file>", "CA bundle that signed etcd's server certificate")
    .option("--cert <file>", "client certificate for mutual TLS")
    .option("--key <file>", "client private key for mutual TLS")
    .option("--cluster <name>", "cluster name used in the object key and the catalogue", "default")
    .option("--s3-endpoint <url>", "S3 endpoint (e.g. a local s3rver)")
    .option("--region <region>", "AWS region")
    .option("--kms-key-id <id>", "SSE-KMS key for the object")
    .option("--table <name>", "DynamoDB catalogue table")
    .option(
      "--dynamodb-endpoint <url>",
      "DynamoDB endpoint (e.g. a local dynalite; the table is created there)",
    )
    .option("--json", "print one JSON object")
    .action((flags) => {
      outcome = runSnapshotCommand(flags);
    });

  program
    .command("verify")
    .description("Check a snapshot file or S3 object: trailer, bbolt structure, revision and key counts")
    .argument("<snapshot>", "FILE, or s3://BUCKET/KEY")
    .option("--s3-endpoint <url>", "S3 endpoint (e.g. a local s3rver)")
    .option("--region <region>", "AWS region")
    .option("--version-id <id>", "S3 object version")
    .option(
      "--json",
      "print one JSON object (fields as `etcdctl snapshot status -w json`, plus liveKeyCount)",
    )
    .action((snapshot, flags) => {
      outcome = runVerifyCommand(snapshot, flags);
    });

  program.addOption(new Option("--no-color").hideHelp());
  const debug = argv.includes("--debug");
  try {
    await program.parseAsync(argv, { from: "user" });
    await outcome;
    return ExitCodes.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed the usage message (or the help, which is not an error).
      return error.exitCode === 0 ? ExitCodes.ok : ExitCodes.usage;
    }
    printError(error, debug);
    return exitCodeFor(error);
  }
}
