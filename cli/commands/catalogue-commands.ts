// `etcd-backup list`, `show`, `approve` and `reject`: the catalogue and pending restore approvals.
import { userInfo } from "node:os";
import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient } from "@aws-sdk/client-sfn";
import { StackOutputs } from "../../infra/stack-outputs.js";
import { ApprovalTokens, approvalRejectedError } from "../../lambdas/core/catalogue/approval-tokens.js";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { type SnapshotStatus, snapshotStatuses } from "../../lambdas/core/catalogue/snapshot-record.js";
import {
  ExecutionNotFoundError,
  InvalidInputError,
  SnapshotNotFoundError,
} from "../../lambdas/core/errors.js";
import type { MemberHashCheck } from "../../lambdas/core/snapshot/member-hash-check.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import { flagsFromStack, type StackFlags } from "../deployed-stack.js";
import { readLocalExecution } from "../local/local-executions.js";
import { localSessionEnvironment } from "../local/local-session.js";
import { formatBytes, printJson } from "../terminal-output.js";

export interface CatalogueFlags extends StackFlags {
  /** The catalogue of the running `etcd-backup local up`. */
  local?: boolean;
  /** Default: the stack's CatalogueTableName output. */
  table?: string;
  dynamodbEndpoint?: string;
  json?: boolean;
}

/** The table and its client: the local stack's with --local, else the flags' or the stack outputs'. */
async function openCatalogueTable(flags: CatalogueFlags) {
  if (flags.local) {
    const environment = await localSessionEnvironment();
    const client = createDynamoDbClient({ endpoint: environment.dynamo.endpoint });
    return { client, tableName: environment.tableName };
  }
  const { table } = await flagsFromStack(flags, { table: StackOutputs.catalogueTableName });
  const client = createDynamoDbClient({ endpoint: flags.dynamodbEndpoint, region: flags.region });
  return { client, tableName: table };
}

async function openCatalogue(flags: CatalogueFlags) {
  const { client, tableName } = await openCatalogueTable(flags);
  return { client, repository: new CatalogueRepository({ client, tableName }) };
}

export async function runListCommand(
  flags: CatalogueFlags & { cluster: string; status?: string; limit: string; nextToken?: string },
) {
  // Checked before the stack or the table is asked for anything.
  if (!/^\d+$/.test(flags.limit)) {
    throw new InvalidInputError(`--limit expects a number of rows (1 to 1000), not "${flags.limit}"`);
  }
  const status = flags.status?.toUpperCase();
  if (status !== undefined && !snapshotStatuses.includes(status as SnapshotStatus)) {
    throw new InvalidInputError(
      `--status expects one of ${snapshotStatuses.join(", ")}, not "${flags.status}"`,
    );
  }
  const { client, repository } = await openCatalogue(flags);
  try {
    const page = await repository.listSnapshots(flags.cluster, {
      limit: Number(flags.limit),
      nextToken: flags.nextToken,
      ...(status ? { status: status as SnapshotStatus } : {}),
    });
    if (flags.json) return printJson(page);
    if (page.snapshots.length === 0) {
      process.stderr.write(
        `no ${status ? `${status} ` : ""}snapshots of ${flags.cluster} in the catalogue\n`,
      );
    }
    for (const row of page.snapshots) {
      const size = row.bytes === undefined ? "" : formatBytes(row.bytes);
      process.stdout.write(
        `${row.snapshotId}  ${row.status.padEnd(11)} ${size.padStart(10)}  rev ${row.revision ?? "-"}  ${row.tags.join(",")}${row.retentionTier ? `  kept by ${row.retentionTier}` : ""}${memberHashNote(row.memberHash)}\n`,
      );
    }
    if (page.nextToken) process.stdout.write(`more: --next-token ${page.nextToken}\n`);
  } finally {
    client.destroy();
  }
}

/** What `list` says of the members' HashKV: only what needs a look (`show` has the whole comparison). */
function memberHashNote(check: MemberHashCheck | undefined): string {
  if (check?.outcome === "mismatched") return `  HASHKV MISMATCHED: ${check.diverged.join(", ")} differ`;
  if (check?.outcome === "matched" && check.diverged)
    return `  MEMBERS DIVERGED: ${check.diverged.join(", ")}`;
  return "";
}

export async function runShowCommand(snapshotId: string, flags: CatalogueFlags & { cluster: string }) {
  const { client, repository } = await openCatalogue(flags);
  try {
    const row = await repository.getSnapshot(flags.cluster, snapshotId);
    if (!row) throw new SnapshotNotFoundError(`cluster ${flags.cluster} has no snapshot ${snapshotId}`);
    if (flags.json) return printJson(row);
    for (const [field, value] of Object.entries(row)) {
      process.stdout.write(
        `${field.padEnd(14)} ${typeof value === "object" ? JSON.stringify(value) : value}\n`,
      );
    }
  } finally {
    client.destroy();
  }
}

/** Answers a restore's approval by its execution name: the task token is looked up in the catalogue. */
export async function runApprovalCommand(
  decision: "approve" | "reject",
  executionName: string,
  flags: CatalogueFlags & { reason?: string; by?: string },
) {
  const { client: dynamo, tableName } = await openCatalogueTable(flags);
  const sfn = new SFNClient(flags.region ? { region: flags.region } : {});
  try {
    const approvals = new ApprovalTokens({ client: dynamo, tableName });
    const pending = await approvals.find(executionName);
    const by = flags.by ?? operatorName();
    if (flags.local) {
      await refuseUnlessStillRunning(approvals, executionName);
      // No Step Functions service takes the token locally: the waiting run polls for this answer.
      await approvals.recordAnswer(executionName, {
        approved: decision === "approve",
        by,
        ...(decision === "reject" ? { reason: flags.reason ?? "rejected" } : {}),
      });
    } else {
      const answered =
        decision === "approve"
          ? sfn.send(
              new SendTaskSuccessCommand({
                taskToken: pending.taskToken,
                output: JSON.stringify({ approved: true, approvedBy: by }),
              }),
            )
          : sfn.send(
              new SendTaskFailureCommand({
                taskToken: pending.taskToken,
                error: approvalRejectedError,
                cause: `${by}: ${flags.reason ?? "rejected"}`,
              }),
            );
      await answered.catch(async (error: unknown) => {
        if (!noLongerWaiting.has((error as Error).name)) throw error;
        await approvals.remove(executionName);
        throw new ExecutionNotFoundError(
          `restore ${executionName} no longer waits for an answer: its approval timed out or its execution ended (etcd-backup status ${executionName})`,
        );
      });
    }
    if (!flags.local) await approvals.remove(executionName);
    const result = {
      executionName,
      cluster: pending.targetCluster,
      snapshotId: pending.snapshotId,
      decision,
      by,
    };
    if (flags.json) printJson(result);
    else
      process.stdout.write(
        `${decision === "approve" ? "approved" : "rejected"} the restore of ${pending.targetCluster} from ${pending.snapshotId}\n`,
      );
  } finally {
    dynamo.destroy();
    sfn.destroy();
  }
}

/** What Step Functions answers for the token of a task that has ended (timed out, execution stopped). */
const noLongerWaiting = new Set(["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"]);

/** Who answers, as the approval records it: the login name, even where $USER is unset (sudo, cron). */
function operatorName(): string {
  try {
    return process.env.USER || userInfo().username;
  } catch {
    return "unknown";
  }
}

/**
 * A local restore whose process ended (Ctrl-C) leaves its pending approval behind with nobody polling it:
 * an answer there would report an approval that nothing acts on. The stale approval goes instead.
 */
async function refuseUnlessStillRunning(approvals: ApprovalTokens, executionName: string): Promise<void> {
  const { workDir } = await localSessionEnvironment();
  const execution = await readLocalExecution(workDir, executionName);
  if (execution.status === "RUNNING") return;
  await approvals.remove(executionName);
  throw new ExecutionNotFoundError(
    `restore ${executionName} is ${execution.status}: nothing waits for an answer any more`,
  );
}
