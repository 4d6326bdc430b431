// Starts bench/kube-api-process.ts (the stand-in Kubernetes API server with one etcd pod) as a child
// process and waits for the kubeconfig it prints.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { KubeApiProcessArguments } from "./kube-api-process.js";

/** The etcd pod the product is pointed at, and how to reach the API server serving it. */
export interface KubeApiAccess {
  /** A kubeconfig file with the CA and token embedded, as the product's kubeconfig secret holds them. */
  kubeconfig: string;
  pod: { namespace: string; name: string; container: string };
}

export interface KubeApiEndpointProcess extends KubeApiAccess {
  server: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startKubeApiProcess(args: KubeApiProcessArguments): Promise<KubeApiEndpointProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", join(import.meta.dirname, "kube-api-process.ts"), JSON.stringify(args)],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const lines = createInterface({ input: child.stdout as NonNullable<typeof child.stdout> });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) =>
      reject(new Error(`kube API stand-in process exited with ${code} before listening`)),
    );
  });
  const printed = JSON.parse(first) as { server: string; kubeconfig: string; pod: KubeApiAccess["pod"] };
  return {
    ...printed,
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.stdin?.end();
      await exited;
    },
  };
}
