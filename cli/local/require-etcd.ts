// The local stack runs this machine's etcd, its restore tool, and the restore agent (a bash script) on
// this machine: say what to install when any of them is missing, before anything starts, rather than as
// a restore that times out waiting for agents that could not run.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { InvalidInputError } from "../../lambdas/core/errors.js";
import { detectInstalledEtcd } from "./installed-etcd.js";

const run = promisify(execFile);

/**
 * What lambdas/core/restore/agent/etcd-restore-agent.sh uses beyond POSIX, each tried as the agent runs it;
 * prints one line for each that fails. Written for bash 3.2 too, so that macOS's /bin/bash gets to report
 * itself.
 */
const agentToolsCheck = `
((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 403)) || echo "bash >= 4.3 (bash on PATH is $BASH_VERSION)"
for command in curl sha256sum timeout; do
  command -v "$command" >/dev/null 2>&1 || echo "$command"
done
dir=$(mktemp -d) || exit 1
mkdir "$dir/from" && { mv -T "$dir/from" "$dir/to" 2>/dev/null || echo "mv -T (GNU coreutils)"; }
stat -c %d "$dir" >/dev/null 2>&1 || echo "stat -c (GNU coreutils)"
dd if=/dev/null of=/dev/null bs=1M count=0 iflag=count_bytes,fullblock status=none 2>/dev/null ||
  echo "dd iflag=count_bytes (GNU coreutils)"
rm -rf "$dir"
`;

export async function requireEtcd(): Promise<void> {
  await detectInstalledEtcd();
  const { stdout } = await run("bash", ["-c", agentToolsCheck]).catch((error: Error) => {
    throw new InvalidInputError(`the local restore agents run bash, which did not run: ${error.message}`);
  });
  const missing = stdout.trim().split("\n").filter(Boolean);
  if (missing.length > 0) {
    throw new InvalidInputError(
      `the local restore agents need ${missing.join(", ")} — macOS: brew install bash coreutils, with coreutils' gnubin first on PATH (export PATH="$(brew --prefix coreutils)/libexec/gnubin:$PATH")`,
    );
  }
}
