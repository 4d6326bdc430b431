// The bench's stand-ins (s3rver, the Kubernetes API server) each run in a process of their own, so that
// their CPU and memory are not counted as the product's. Both halves of that arrangement live here.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

export interface HelperProcess<Printed> {
  /** The JSON line the helper printed once it was ready. */
  printed: Printed;
  pid: number;
  /** Closes the helper's stdin, on which it stops, and waits for it to exit. */
  stop(): Promise<void>;
}

/** Parent side: runs `bench/<script>` with tsx and waits for the one JSON line it prints when ready. */
export async function startHelperProcess<Printed>(
  script: string,
  args: string[],
  what: string,
): Promise<HelperProcess<Printed>> {
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", join(import.meta.dirname, script), ...args],
    {
      stdio: ["pipe", "pipe", "inherit"],
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
    },
  );
  const lines = createInterface({ input: child.stdout as NonNullable<typeof child.stdout> });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`${what} process exited with ${code} before listening`)));
  });
  return {
    printed: JSON.parse(first) as Printed,
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.stdin?.end();
      await exited;
    },
  };
}

/**
 * Child side: prints `ready` as its one JSON line, then stops (with `stop`) on SIGTERM, SIGINT or when its
 * stdin closes, so that it never outlives the bench.
 */
export function serveUntilParentGoes(ready: object, stop: () => Promise<void>): void {
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  let stopping = false;
  const stopOnce = async () => {
    if (stopping) return;
    stopping = true;
    await stop();
    process.exit(0);
  };
  process.on("SIGTERM", stopOnce);
  process.on("SIGINT", stopOnce);
  process.stdin.on("end", stopOnce);
  process.stdin.resume();
}
