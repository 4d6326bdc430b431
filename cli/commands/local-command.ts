// `etcd-backup local up`: the local stack of the demo, kept running until Ctrl-C, for the other commands
// to use with `--local` — a backup, a restore waiting for `approve --local`, the catalogue — as an
// operator uses them against the deployed stack.

import { ExitCodes } from "../exit-codes.js";
import { createEtcdWriter } from "../local/etcd-writer.js";
import { kubernetesShapedKeys } from "../local/kubernetes-shaped-keys.js";
import {
  type LocalSession,
  refuseWhileAnotherRuns,
  removeLocalSession,
  writeLocalSession,
} from "../local/local-session.js";
import { localCluster, startLocalStack } from "../local/local-stack.js";
import { requireEtcd } from "../local/require-etcd.js";
import { ignoreOutputErrors, printJson } from "../terminal-output.js";
import { parseLocalStackSize } from "./local-stack-size.js";

export interface LocalUpFlags {
  members: string;
  keys: string;
  json?: boolean;
}

export async function runLocalUpCommand(flags: LocalUpFlags): Promise<number> {
  const { members, keyCount } = parseLocalStackSize(flags, 0);
  await requireEtcd();
  await refuseWhileAnotherRuns();
  const say = (line: string) => process.stderr.write(`${line}\n`);
  say(`starting etcd (${members} member${members > 1 ? "s" : ""}), s3rver and dynalite on loopback…`);
  // Ctrl-C while the stack starts stops it as soon as it stands, rather than leaving its files behind.
  const stopped = untilStopped();
  const stack = await startLocalStack({ members }).catch((error) => {
    stopped.dispose();
    throw error;
  });
  try {
    const etcdEndpoints = stack.etcd.nodes.map((node) => node.clientUrl);
    if (keyCount > 0) {
      say(`writing ${keyCount} Kubernetes-shaped keys…`);
      await createEtcdWriter({ endpoints: etcdEndpoints }).putMany(kubernetesShapedKeys(keyCount));
    }
    const session: LocalSession = {
      pid: process.pid,
      startedAt: new Date().toISOString(),
      cluster: localCluster,
      etcdEndpoints,
      environment: stack.environment,
    };
    const file = await writeLocalSession(session);
    if (flags.json) printJson({ sessionFile: file, ...session });
    else process.stdout.write(`${usage(session, file)}\n`);
    const signal = await stopped.signal;
    say(`${signal}: stopping the local stack and removing its files…`);
    return ExitCodes.ok;
  } finally {
    stopped.dispose();
    await removeLocalSession(process.pid);
    await stack.stop();
  }
}

function usage(session: LocalSession, file: string): string {
  const cluster = session.cluster;
  return [
    `local stack up (session ${file}):`,
    `  etcd       ${session.etcdEndpoints.join(",")}`,
    `  S3         ${session.environment.s3.endpoint} bucket ${session.environment.bucket}`,
    `  DynamoDB   ${session.environment.dynamo.endpoint} table ${session.environment.tableName}`,
    "",
    "in another terminal (from this checkout, as `npx etcd-backup`):",
    `  npx etcd-backup backup --local --cluster ${cluster}`,
    `  npx etcd-backup list --local --cluster ${cluster}`,
    `  npx etcd-backup restore --local --cluster ${cluster} --snapshot-id ID --allow-without-revision-bump`,
    "  npx etcd-backup approve EXECUTION --local    (in a third terminal, once the restore asks)",
    "",
    "Ctrl-C stops it and removes everything it made.",
  ].join("\n");
}

/**
 * Resolves with the first SIGINT, SIGTERM or SIGHUP (the terminal closed); until then, they no longer end
 * the process. After a SIGHUP nothing can be written to the terminal: output errors are ignored, so that
 * the clean-up still runs.
 */
function untilStopped(): { signal: Promise<NodeJS.Signals>; dispose(): void } {
  let resolve: (signal: NodeJS.Signals) => void = () => {};
  const signal = new Promise<NodeJS.Signals>((done) => {
    resolve = done;
  });
  const onSignal = (received: NodeJS.Signals) => {
    if (received === "SIGHUP") ignoreOutputErrors();
    resolve(received);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);
  return {
    signal,
    dispose: () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.off("SIGHUP", onSignal);
    },
  };
}
