// The `etcd-backup` command line: one program, one subcommand per task.
import { Command, CommanderError, Option } from "commander";
import { defaultStackName } from "../infra/stack-outputs.js";
import { describeUsage, helpConfiguration } from "./command-usage.js";
import { ExitCodes, exitCodeFor } from "./exit-codes.js";
import { printError } from "./terminal-output.js";

// Each command's module is loaded only when it runs: `--help` and small commands start fast.
const commands = {
  catalogue: () => import("./commands/catalogue-commands.js"),
  demo: () => import("./commands/demo-command.js"),
  local: () => import("./commands/local-command.js"),
  operations: () => import("./commands/operations-commands.js"),
  snapshot: () => import("./commands/snapshot-command.js"),
  verify: () => import("./commands/verify-command.js"),
  workflow: () => import("./commands/workflow-commands.js"),
};

/**
 * `restore --snapshot ID`, as the design names it, is `restore --snapshot-id ID`: commander has no option
 * aliases, so the spelling is mapped before parsing.
 */
export function withOptionSpellings(argv: readonly string[]): string[] {
  if (argv.find((arg) => !arg.startsWith("-")) !== "restore") return [...argv];
  return argv.map((arg) =>
    arg === "--snapshot"
      ? "--snapshot-id"
      : arg.startsWith("--snapshot=")
        ? `--snapshot-id=${arg.slice(11)}`
        : arg,
  );
}

export async function runCli(argv: string[]): Promise<number> {
  const program = new Command("etcd-backup")
    .description("Stream, verify, catalogue and restore etcd snapshots")
    .option("--debug", "show stack traces on errors")
    .configureHelp(helpConfiguration)
    .exitOverride();
  /** The running command; one that returns a number exits with it. */
  let outcome: Promise<unknown> = Promise.resolve();

  /** The size of the local stack that `demo` and `local up` start. */
  const localStackOptions = (command: Command, keys: { help: string; default: string }) =>
    command
      .option("--members <n>", "etcd members: 1 or 3", "1")
      .option("--keys <n>", keys.help, keys.default);

  localStackOptions(
    program
      .command("demo")
      .description(
        "Run both state machines end to end on this machine: real etcd, s3rver, dynalite, no AWS account",
      ),
    { help: "Kubernetes-shaped keys to write before the snapshot", default: "2000" },
  )
    .option("--json", "print one JSON object; the exit code says whether every check held")
    .action((flags) => {
      outcome = commands
        .demo()
        .then(({ runDemoCommand }) => runDemoCommand(flags))
        .then((result) => (result.ok ? ExitCodes.ok : ExitCodes.failure));
    });

  localStackOptions(
    program
      .command("local")
      .description("The local stack of the demo, kept running for the other commands' --local")
      .command("up")
      .description(
        "Start etcd, s3rver and dynalite on this machine and keep them until Ctrl-C; backup, restore, status, approve, reject, list, show, prune --dry-run and verify s3://… take --local to use them",
      ),
    { help: "Kubernetes-shaped keys to write at the start", default: "500" },
  )
    .option("--json", "print the session (endpoints, names) as one JSON object once up")
    .action((flags) => {
      outcome = commands.local().then(({ runLocalUpCommand }) => runLocalUpCommand(flags));
    });

  program
    .command("snapshot")
    .description(
      "Stream one snapshot from etcd to a file or S3, verify it, and catalogue it when --table is given",
    )
    .option(
      "--endpoints <urls>",
      "etcd client URLs, comma-separated (a healthy follower is chosen); or find etcd through Kubernetes:",
    )
    .option("--kubeconfig <file>", "a kubeconfig: find the etcd pods through its Kubernetes API")
    .option("--context <name>", "the kubeconfig context to use instead of the current one")
    .option(
      "--eks-cluster <name>",
      "an EKS cluster: its API through DescribeCluster and an EKS token (needs --region)",
    )
    .addOption(
      new Option(
        "--source <kind>",
        "how to read a pod's snapshot: grpc through a port-forward, or etcdctl through exec",
      ).choices(["grpc", "exec"]),
    )
    .addOption(
      new Option(
        "--preset <who>",
        "who runs the etcd pods: kubeadm (static pods in kube-system, grpc source) or bitnami (the chart's StatefulSet in --namespace, exec source)",
      )
        .choices(["kubeadm", "bitnami"])
        .default("kubeadm"),
    )
    .option("--release <name>", "the Bitnami chart's release (with --preset bitnami)")
    .option("--namespace <namespace>", "namespace of the etcd pods (default: the preset's)")
    .option("--selector <labels>", "label selector of the etcd pods (default: the preset's)")
    .option("--container <name>", "the etcd container in each pod (default: etcd)")
    .requiredOption("--to <destination>", "FILE, or s3://BUCKET/PREFIX")
    .option("--cacert <file>", "CA bundle that signed etcd's server certificate (direct or grpc source)")
    .option("--cert <file>", "client certificate for mutual TLS (direct or grpc source)")
    .option("--key <file>", "client private key for mutual TLS (direct or grpc source)")
    .option("--cluster <name>", "cluster name used in the object key and the catalogue", "default")
    .option("--s3-endpoint <url>", "S3 endpoint (e.g. a local s3rver)")
    .option("--region <region>", "AWS region (of the bucket, and of the EKS cluster)")
    .option("--kms-key-id <id>", "SSE-KMS key for the object")
    .option("--table <name>", "DynamoDB catalogue table (with --to s3://…)")
    .option(
      "--dynamodb-endpoint <url>",
      "DynamoDB endpoint (e.g. a local dynalite; the table is created there)",
    )
    .option("--json", "print one JSON object")
    .action((flags) => {
      outcome = commands.snapshot().then(({ runSnapshotCommand }) => runSnapshotCommand(flags));
    });

  program
    .command("verify")
    .description("Check a snapshot file or S3 object: trailer, bbolt structure, revision and key counts")
    .argument("<snapshot>", "FILE, or s3://BUCKET/KEY")
    .option("--s3-endpoint <url>", "S3 endpoint (e.g. a local s3rver)")
    .option("--local", "read s3:// from the local stack of `etcd-backup local up`")
    .option("--region <region>", "AWS region")
    .option("--version-id <id>", "S3 object version")
    .option(
      "--json",
      "print one JSON object (fields as `etcdctl snapshot status -w json`, plus liveKeyCount)",
    )
    .action((snapshot, flags) => {
      outcome = commands.verify().then(({ runVerifyCommand }) => runVerifyCommand(snapshot, flags));
    });

  /** Against AWS, names left out are read from the deployed stack's outputs. */
  const stackOption = (command: Command) =>
    command.option(
      "--stack <name>",
      "the deployed stack whose outputs name what a flag leaves out",
      defaultStackName,
    );
  const catalogueOptions = (command: Command) =>
    stackOption(command)
      .option("--local", "use the local stack of `etcd-backup local up` instead of AWS")
      .option("--table <name>", "the catalogue table (default: the stack's CatalogueTableName)")
      .option("--dynamodb-endpoint <url>", "DynamoDB endpoint (e.g. a local dynalite)")
      .option("--region <region>", "AWS region")
      .option("--json", "print one JSON object");

  catalogueOptions(
    program
      .command("list")
      .description("List a cluster's snapshots, newest first")
      .requiredOption("--cluster <name>", "cluster name")
      .option("--status <status>", "only IN_PROGRESS, UPLOADED, VERIFIED, FAILED or DELETED")
      .option("--limit <n>", "rows per page", "50")
      .option("--next-token <token>", "continue a listing"),
  ).action((flags) => {
    outcome = commands.catalogue().then(({ runListCommand }) => runListCommand(flags));
  });

  catalogueOptions(
    program
      .command("show")
      .description("Show one snapshot's catalogue row")
      .argument("<snapshotId>")
      .requiredOption("--cluster <name>", "cluster name"),
  ).action((snapshotId, flags) => {
    outcome = commands.catalogue().then(({ runShowCommand }) => runShowCommand(snapshotId, flags));
  });

  for (const decision of ["approve", "reject"] as const) {
    const command = program
      .command(decision)
      .description(
        `${decision === "approve" ? "Approve" : "Reject"} a restore waiting for approval, by its execution name`,
      )
      .argument("<execution>", "the restore execution's name (in the approvers' message)")
      .option("--by <name>", "who decides (default: your login name)");
    if (decision === "reject")
      command.option("--reason <text>", "why, for the notice and the execution's history");
    catalogueOptions(command).action((execution, flags) => {
      outcome = commands
        .catalogue()
        .then(({ runApprovalCommand }) => runApprovalCommand(decision, execution, flags));
    });
  }

  program
    .command("config")
    .description("Check configuration files")
    .command("validate")
    .description("Validate a targets file: every invalid field is named")
    .argument("<file>", "the targets file (JSON)")
    .option("--json", "print one JSON object")
    .action((file, flags) => {
      outcome = commands
        .operations()
        .then(({ runConfigValidateCommand }) => runConfigValidateCommand(file, flags));
    });

  stackOption(program.command("prune"))
    .description(
      "Show what the retention policy would delete now (--dry-run); the backup workflow applies it",
    )
    .requiredOption("--cluster <name>", "cluster name")
    .option("--targets <file>", "the targets file (for the cluster's retention policy)")
    .option("--local", "use the local stack of `etcd-backup local up` (its targets, bucket and catalogue)")
    .option("--bucket <name>", "the snapshot bucket (default: the stack's SnapshotBucketName)")
    .option("--table <name>", "the catalogue table (default: the stack's CatalogueTableName)")
    .option("--dry-run", "only show the plan")
    .option("--prefix <prefix>", "key prefix (default: the targets file's)")
    .option("--s3-endpoint <url>", "S3 endpoint (e.g. a local s3rver)")
    .option("--dynamodb-endpoint <url>", "DynamoDB endpoint (e.g. a local dynalite)")
    .option("--region <region>", "AWS region")
    .option("--json", "print one JSON object")
    .action((flags) => {
      outcome = commands.operations().then(({ runPruneCommand }) => runPruneCommand(flags));
    });

  /** The workflow commands: AWS region, following the execution, JSON. */
  const workflowOptions = (command: Command) =>
    stackOption(command)
      .option("--region <region>", "AWS region")
      .option("--wait", "follow the execution to its end; the exit code says how it ended")
      .option("--poll-seconds <n>", "seconds between checks with --wait", "10")
      .option("--json", "print one JSON object");

  workflowOptions(
    program
      .command("backup")
      .description("Start the deployed backup workflow now, outside the schedule (before an upgrade, say)")
      .option(
        "--state-machine-arn <arn>",
        "the backup state machine (default: the stack's BackupStateMachineArn)",
      )
      .requiredOption("--cluster <name>", "the cluster to back up")
      .option("--tag <tag...>", "catalogue tags for the snapshot, besides on-demand")
      .option("--local", "run it on the local stack of `etcd-backup local up`, in this process, to its end"),
  ).action((flags) => {
    outcome = commands.workflow().then(({ runBackupCommand }) => runBackupCommand(flags));
  });

  workflowOptions(
    program
      .command("restore")
      .description(
        "Start the deployed restore workflow for a snapshot; it waits for approval before changing anything",
      )
      .option(
        "--state-machine-arn <arn>",
        "the restore state machine (default: the stack's RestoreStateMachineArn)",
      )
      .requiredOption("--cluster <name>", "the cluster to restore")
      .requiredOption("--snapshot-id <id>", "a VERIFIED snapshot (also --snapshot <id>)")
      .option(
        "--source-cluster <name>",
        "the cluster whose catalogue holds the snapshot (needs --allow-cross-cluster)",
      )
      .option("--allow-cross-cluster", "restore another cluster's snapshot")
      .option(
        "--allow-cluster-id-change",
        "etcd's cluster id changed since the snapshot because the cluster was restored since",
      )
      .option(
        "--skip-safety-snapshot",
        "etcd is down: go on when the current state cannot be saved first (it is still tried)",
      )
      .option(
        "--allow-without-revision-bump",
        "restore without --bump-revision where the node's restore tool lacks it (etcd 3.4, early 3.5; docs/restore.md)",
      )
      .option(
        "--local",
        "run it on the local stack of `etcd-backup local up`, in this process, to its end (approve with approve --local)",
      ),
  ).action((flags) => {
    outcome = commands.workflow().then(({ runRestoreCommand }) => runRestoreCommand(flags));
  });

  workflowOptions(
    program
      .command("status")
      .description("Show where a backup or restore execution is, and why it failed if it did")
      .argument("<execution>", "the execution's name (as backup or restore printed it) or ARN")
      .option("--local", "an execution that backup or restore --local runs on the local stack")
      .option("--backup-state-machine-arn <arn>", "default: the stack's BackupStateMachineArn")
      .option("--restore-state-machine-arn <arn>", "default: the stack's RestoreStateMachineArn"),
  ).action((execution, flags) => {
    outcome = commands.workflow().then(({ runStatusCommand }) => runStatusCommand(execution, flags));
  });

  program.addOption(new Option("--no-color").hideHelp());
  describeUsage(program);
  const debug = argv.includes("--debug");
  try {
    await program.parseAsync(withOptionSpellings(argv), { from: "user" });
    const code = await outcome;
    return typeof code === "number" ? code : ExitCodes.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has printed the usage message (or the help, which is not an error).
      return error.exitCode === 0 ? ExitCodes.ok : ExitCodes.usage;
    }
    printError(error, debug);
    return exitCodeFor(error);
  }
}
