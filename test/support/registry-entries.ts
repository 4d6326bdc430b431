// What a member serves under /registry/, read with the real etcdctl: the tests' view of a restore's outcome.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Every /registry/ key and its value, as the member at `clientUrl` serves them. */
export async function registryEntries(clientUrl: string): Promise<Map<string, string>> {
  const { stdout } = await run("etcdctl", [`--endpoints=${clientUrl}`, "get", "/registry/", "--prefix"]);
  const lines = stdout.split("\n").filter(Boolean);
  const entries = new Map<string, string>();
  for (let line = 0; line + 1 < lines.length; line += 2) {
    entries.set(lines[line] as string, lines[line + 1] as string);
  }
  return entries;
}
