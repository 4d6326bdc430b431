// The local stack runs this machine's etcd and etcdctl: say how to install them when they are missing.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { InvalidInputError } from "../../lambdas/core/errors.js";

const run = promisify(execFile);

export async function requireEtcd(): Promise<void> {
  const missing: string[] = [];
  for (const [binary, versionArgument] of [
    ["etcd", "--version"],
    ["etcdctl", "version"],
  ] as const) {
    await run(binary, [versionArgument]).catch(() => missing.push(binary));
  }
  if (missing.length > 0) {
    throw new InvalidInputError(
      `${missing.join(" and ")} not found: install etcd first — Debian/Ubuntu: sudo apt-get install etcd-server etcd-client; macOS: brew install etcd`,
    );
  }
}
