// `etcd-backup config validate` and `prune --dry-run`: checks on a configuration and a deployment.
import { readFile } from "node:fs/promises";
import { StackOutputs } from "../../infra/stack-outputs.js";
import { silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { pruneSnapshots } from "../../lambdas/core/backup/prune-snapshots-step.js";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { ClusterLeases } from "../../lambdas/core/catalogue/cluster-lease.js";
import {
  parseTargetsFile,
  type TargetsFile,
  targetsFileSchema,
} from "../../lambdas/core/config/target-config.js";
import { InvalidInputError } from "../../lambdas/core/errors.js";
import { createDynamoDbClient, createS3Client } from "../../lambdas/core/store/aws-clients.js";
import { flagsFromStack, type StackFlags } from "../deployed-stack.js";
import { ExitCodes } from "../exit-codes.js";
import type { LocalHandlerEnvironment } from "../local/local-handler-environment.js";
import { localSessionEnvironment } from "../local/local-session.js";
import { printError, printJson } from "../terminal-output.js";

export async function readTargetsFile(path: string): Promise<TargetsFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new InvalidInputError(`${path} does not exist: check the path`);
    throw new InvalidInputError(`cannot read ${path} (${code ?? (error as Error).message})`);
  }
  let content: unknown;
  try {
    content = JSON.parse(text);
  } catch (error) {
    throw new InvalidInputError(`${path} is not JSON: ${describeJsonError(text, error as Error)}`);
  }
  return parseTargetsFile(content, path);
}

/** JSON.parse's complaint with the line and column of its position, and a word on comments. */
function describeJsonError(text: string, error: Error): string {
  const position = Number(/at position (\d+)/.exec(error.message)?.[1]);
  let where = "";
  if (Number.isInteger(position)) {
    const before = text.slice(0, position).split("\n");
    where = ` (line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1})`;
  }
  const comments = /^\s*\/\/|\/\*/m.test(text)
    ? "; comments are not JSON (the README's annotated example is not a file to copy: start from etcd-backup.targets.example.json)"
    : "";
  return `${error.message}${where}${comments}`;
}

/** With --json an invalid file is an answer too: `{"valid":false,"errors":[...]}` on stdout, exit code 2. */
export async function runConfigValidateCommand(path: string, flags: { json?: boolean }) {
  let file: TargetsFile;
  try {
    file = await readTargetsFile(path);
  } catch (error) {
    if (!(error instanceof InvalidInputError)) throw error;
    const problems = await targetsFileProblems(path, error);
    if (flags.json) {
      printError(error, false);
      printJson({ valid: false, errors: problems });
    } else if (problems.length > 1) {
      // A list to work through, one problem a line, rather than one line of all of them.
      process.stderr.write(
        `etcd-backup: ${path} is invalid (${problems.length} problems):\n${problems.map((problem) => `  - ${problem}\n`).join("")}`,
      );
    } else {
      printError(error, false);
    }
    return ExitCodes.usage;
  }
  const summary = file.targets.map((target) => ({
    name: target.name,
    schedule: target.schedule,
    access: target.access.kind,
    source: target.etcd.source,
    restorable: target.restore !== undefined,
  }));
  if (flags.json) return printJson({ valid: true, prefix: file.prefix, targets: summary });
  process.stdout.write(`${path}: valid, ${summary.length} target(s)\n`);
  for (const target of summary) {
    process.stdout.write(
      `  ${target.name}: ${target.schedule}, ${target.access} access, ${target.source} source${target.restorable ? ", restorable" : ""}\n`,
    );
  }
}

/** One entry per invalid field (as `path: message`), or the one reason the file could not be read or parsed. */
async function targetsFileProblems(path: string, error: InvalidInputError): Promise<string[]> {
  let content: unknown;
  try {
    content = JSON.parse(await readFile(path, "utf8"));
  } catch {
    return [error.message];
  }
  const parsed = targetsFileSchema.safeParse(content);
  if (parsed.success) return [error.message];
  return parsed.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
}

export interface PruneFlags extends StackFlags {
  /** The running `etcd-backup local up`: its targets file, bucket and catalogue. */
  local?: boolean;
  cluster: string;
  targets?: string;
  /** Default: the stack's SnapshotBucketName output. */
  bucket?: string;
  prefix?: string;
  /** Default: the stack's CatalogueTableName output. */
  table?: string;
  s3Endpoint?: string;
  dynamodbEndpoint?: string;
  dryRun?: boolean;
  json?: boolean;
}

/** What retention would delete now; only a dry run is offered here: deletion is the state machine's job. */
export async function runPruneCommand(given: PruneFlags) {
  if (!given.dryRun)
    throw new InvalidInputError("prune only runs with --dry-run here: the backup workflow applies retention");
  const flags = given.local ? { ...given, ...localPruneFlags(await localSessionEnvironment()) } : given;
  if (!flags.targets) throw new InvalidInputError("prune needs --targets FILE (or --local)");
  const targets = await readTargetsFile(flags.targets);
  const { bucket, table } = await flagsFromStack(flags, {
    bucket: StackOutputs.snapshotBucketName,
    table: StackOutputs.catalogueTableName,
  });
  const dynamo = createDynamoDbClient({ endpoint: flags.dynamodbEndpoint, region: flags.region });
  const s3 = createS3Client({ endpoint: flags.s3Endpoint, region: flags.region });
  try {
    const plan = await pruneSnapshots(
      {
        s3,
        catalogue: new CatalogueRepository({ client: dynamo, tableName: table }),
        leases: new ClusterLeases({ client: dynamo, tableName: table }),
        bucket,
        prefix: flags.prefix ?? targets.prefix,
        loadTargets: async () => targets,
        loadEtcdTls: async () => undefined,
        now: () => new Date(),
        reporter: silentReporter,
      },
      { cluster: flags.cluster },
      { dryRun: true },
    );
    if (flags.json) return printJson(plan);
    for (const kept of plan.keep)
      process.stdout.write(`keep    ${kept.snapshotId}  ${kept.reasons.join(", ")}\n`);
    for (const gone of plan.delete) process.stdout.write(`delete  ${gone.snapshotId}  ${gone.reason}\n`);
  } finally {
    dynamo.destroy();
    s3.destroy();
  }
}

function localPruneFlags(local: LocalHandlerEnvironment) {
  return {
    targets: local.targetsFile,
    bucket: local.bucket,
    table: local.tableName,
    prefix: local.prefix,
    s3Endpoint: local.s3.endpoint,
    dynamodbEndpoint: local.dynamo.endpoint,
  };
}
