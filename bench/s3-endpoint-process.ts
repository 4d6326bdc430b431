// Starts bench/s3rver-process.ts as a child process and waits for the endpoint it prints.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

export interface S3EndpointProcess {
  endpoint: string;
  bucket: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startS3EndpointProcess(): Promise<S3EndpointProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", join(import.meta.dirname, "s3rver-process.ts")],
    {
      stdio: ["pipe", "pipe", "inherit"],
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
    },
  );
  const lines = createInterface({ input: child.stdout as NonNullable<typeof child.stdout> });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`s3rver process exited with ${code} before listening`)));
  });
  const { endpoint, bucket } = JSON.parse(first) as { endpoint: string; bucket: string };
  return {
    endpoint,
    bucket,
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.stdin?.end();
      await exited;
    },
  };
}
