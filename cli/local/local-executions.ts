// The local stack's record of the executions that `backup|restore --local` run in their own processes,
// so that `etcd-backup status NAME --local`, in another terminal, can say where one is, as it asks Step
// Functions for a deployed one. One small JSON file per execution under the stack's work directory.
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ExecutionNotFoundError, InvalidInputError } from "../../lambdas/core/errors.js";
import type { ExecutionStatus } from "../execution-status.js";
import { isProcessAlive } from "./local-session.js";

interface LocalExecutionRecord extends ExecutionStatus {
  /** The process running the execution: gone while RUNNING means it was stopped (Ctrl-C). */
  pid: number;
}

const executionsDir = (workDir: string) => join(workDir, "executions");
const recordFile = (workDir: string, name: string) => join(executionsDir(workDir), `${name}.json`);

/** Records one execution as it runs: written whole on every change, so a reader never sees half of one. */
export function recordLocalExecution(workDir: string, start: Omit<ExecutionStatus, "status">) {
  mkdirSync(executionsDir(workDir), { recursive: true });
  const file = recordFile(workDir, start.name);
  const write = (record: LocalExecutionRecord) => {
    writeFileSync(`${file}.tmp`, JSON.stringify(record));
    renameSync(`${file}.tmp`, file);
  };
  let current: LocalExecutionRecord = { ...start, status: "RUNNING", pid: process.pid };
  write(current);
  return {
    entered(state: string) {
      current = { ...current, currentState: state };
      write(current);
    },
    finished(status: ExecutionStatus) {
      current = { ...status, pid: process.pid };
      write(current);
    },
  };
}

/**
 * Where a local execution is, by its name or ARN; ABORTED when the process that ran it ended without
 * finishing it.
 */
export async function readLocalExecution(workDir: string, nameOrArn: string): Promise<ExecutionStatus> {
  // An execution's name has no colon (Step Functions refuses one), so its ARN ends with it.
  const name = nameOrArn.split(":").at(-1) ?? nameOrArn;
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new InvalidInputError(`not an execution name: "${nameOrArn}"`);
  let text: string;
  try {
    text = await readFile(recordFile(workDir, name), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    throw new ExecutionNotFoundError(`the local stack ran no execution named "${name}"`);
  }
  const { pid, ...status } = JSON.parse(text) as LocalExecutionRecord;
  if (status.status === "RUNNING" && !isProcessAlive(pid)) {
    return { ...status, status: "ABORTED", failure: { error: "the process running it ended (Ctrl-C?)" } };
  }
  return status;
}
