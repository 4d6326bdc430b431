// Starts bench/kube-api-process.ts (the stand-in Kubernetes API server with one etcd pod) as a child
// process and waits for the kubeconfig it prints.
import { startHelperProcess } from "./helper-process.js";
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
  const helper = await startHelperProcess<{ server: string; kubeconfig: string; pod: KubeApiAccess["pod"] }>(
    "kube-api-process.ts",
    [JSON.stringify(args)],
    "kube API stand-in",
  );
  return { ...helper.printed, pid: helper.pid, stop: helper.stop };
}
