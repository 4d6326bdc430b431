// `etcd-backup local up` keeps the local stack running and leaves where to find it in a session file, so
// that the other commands, given `--local`, work against that stack as they would against the deployed
// one: list and show read its catalogue, approve and reject record answers there, backup and restore run
// the state machines in their own process against its etcd, S3 and DynamoDB.
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { InvalidInputError } from "../../lambdas/core/errors.js";
import { applyLocalHandlerEnvironment, type LocalHandlerEnvironment } from "./local-handler-environment.js";

export interface LocalSession {
  /** The `local up` process, which runs etcd's kubelet stand-in, s3rver and dynalite. */
  pid: number;
  startedAt: string;
  cluster: string;
  etcdEndpoints: string[];
  environment: LocalHandlerEnvironment;
}

/** One per user; ETCD_BACKUP_LOCAL_SESSION names another (to run two stacks, or in tests). */
export function localSessionFile(): string {
  return process.env.ETCD_BACKUP_LOCAL_SESSION ?? join(tmpdir(), `etcd-backup-local-${userInfo().uid}.json`);
}

/** Refuses while another live stack owns the session file (a stale one is overwritten). */
export async function refuseWhileAnotherRuns(ownPid = process.pid): Promise<void> {
  const file = localSessionFile();
  const running = await readSessionFile(file);
  if (running && running.pid !== ownPid && isProcessAlive(running.pid)) {
    throw new InvalidInputError(
      `a local stack is already running (pid ${running.pid}, ${file}): stop it first (Ctrl-C in its terminal, or kill ${running.pid}), or set ETCD_BACKUP_LOCAL_SESSION to another file`,
    );
  }
}

/** Written whole (renamed into place), and refused while another live stack owns the file. */
export async function writeLocalSession(session: LocalSession): Promise<string> {
  const file = localSessionFile();
  await refuseWhileAnotherRuns(session.pid);
  await writeFile(`${file}.${session.pid}`, `${JSON.stringify(session, null, 2)}\n`, { mode: 0o600 });
  await rename(`${file}.${session.pid}`, file);
  return file;
}

/** Removes the session file if it is still this process's. */
export async function removeLocalSession(pid: number): Promise<void> {
  const file = localSessionFile();
  if ((await readSessionFile(file))?.pid === pid) await rm(file, { force: true });
}

/** The running local stack, its endpoints applied to this process for the handlers. */
export async function useLocalSession(): Promise<LocalSession> {
  const file = localSessionFile();
  const session = await readSessionFile(file);
  if (!session || !isProcessAlive(session.pid)) {
    throw new InvalidInputError(
      `no local stack is running (${file}${session ? ` names pid ${session.pid}, which has exited` : " does not exist"}): start one with \`etcd-backup local up\``,
    );
  }
  applyLocalHandlerEnvironment(session.environment);
  return session;
}

/** Where the running local stack's catalogue, bucket and targets file are. */
export async function localSessionEnvironment(): Promise<LocalHandlerEnvironment> {
  return (await useLocalSession()).environment;
}

async function readSessionFile(file: string): Promise<LocalSession | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as LocalSession;
  } catch {
    throw new InvalidInputError(`${file} is not a local session file: remove it`);
  }
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, but another user's.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
