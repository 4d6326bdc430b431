// A real etcd of one or three members run as static pods: one "node" per member, each with a kubelet-like
// manifest directory watched by the static-pod supervisor, a parked-manifest directory for the restore
// agent, and stand-ins for kube-apiserver (answering /readyz), kube-scheduler and kube-controller-manager.
// Nothing here starts etcd directly: writing the manifests does.
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { findFreePort } from "./free-port.js";
import { detectInstalledEtcd, type InstalledEtcd } from "./installed-etcd.js";
import {
  standInApiServerCommand,
  standInProcess,
  writeEtcdManifest,
  writeStandInApiServerManifest,
  writeStandInComponentManifest,
} from "./static-pod-manifests.js";
import {
  type StaticPodEvent,
  type StaticPodSupervisor,
  startStaticPodSupervisor,
} from "./static-pod-supervisor.js";
import { makeTempDir } from "./temp-dir.js";

const run = promisify(execFile);

export interface StaticPodNode {
  name: string;
  memberName: string;
  manifestDir: string;
  parkedManifestDir: string;
  logDir: string;
  dataDir: string;
  clientUrl: string;
  peerUrl: string;
  /** Where the node's stand-in kube-apiserver answers readiness (HTTP 200 `ok` once it runs). */
  apiServerReadyUrl: string;
  apiServerPort: number;
}

export interface StaticPodEtcd {
  baseDir: string;
  /** This machine's etcd, which the members run, and the restore tool of its release. */
  installed: InstalledEtcd;
  nodes: StaticPodNode[];
  initialCluster: string;
  supervisor: StaticPodSupervisor;
  events: StaticPodEvent[];
  /** etcdctl against one member (API v3), returning stdout. */
  etcdctl(args: string[], memberIndex?: number): Promise<string>;
  /** Waits until every member answers `/health` with true. */
  waitUntilHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export const etcdManifestName = "etcd.json";
export const apiServerManifestName = "kube-apiserver.json";
export const schedulerManifestName = "kube-scheduler.json";
export const controllerManagerManifestName = "kube-controller-manager.json";

export interface StaticPodEtcdOptions {
  members: 1 | 3;
  /** Runs once the nodes' directories exist and before any member starts (a test mounts a volume there). */
  beforeStart?: (nodes: readonly StaticPodNode[]) => Promise<void>;
}

export async function startStaticPodEtcd(options: StaticPodEtcdOptions): Promise<StaticPodEtcd> {
  const installed = await detectInstalledEtcd();
  const temp = await makeTempDir("static-pods");
  const nodes: StaticPodNode[] = [];
  for (let index = 0; index < options.members; index++) {
    const nodeDir = join(temp.path, `node-${index}`);
    const apiServerPort = await findFreePort();
    nodes.push({
      name: `node-${index}`,
      memberName: `member-${index}`,
      manifestDir: join(nodeDir, "etc/kubernetes/manifests"),
      parkedManifestDir: join(nodeDir, "etc/kubernetes/manifests.parked"),
      logDir: join(nodeDir, "var/log/pods"),
      dataDir: join(nodeDir, "var/lib/etcd"),
      clientUrl: `http://127.0.0.1:${await findFreePort()}`,
      peerUrl: `http://127.0.0.1:${await findFreePort()}`,
      apiServerReadyUrl: `http://127.0.0.1:${apiServerPort}/readyz`,
      apiServerPort,
    });
  }
  const initialCluster = nodes.map((node) => `${node.memberName}=${node.peerUrl}`).join(",");
  for (const node of nodes) {
    await mkdir(join(node.dataDir, ".."), { recursive: true });
    await writeEtcdManifest({
      manifestDir: node.manifestDir,
      fileName: etcdManifestName,
      name: node.memberName,
      dataDir: node.dataDir,
      clientUrl: node.clientUrl,
      peerUrl: node.peerUrl,
      initialCluster,
      initialClusterToken: "etcd-backup-static-pods",
      etcdBinary: installed.etcdBinary,
      etcdVersion: installed.etcdVersion,
      // etcd 3.4 takes seconds to stop gracefully once its peers are gone (the kubelet would wait 30 s);
      // SIGKILL is safe for etcd, whose WAL and bbolt survive a crash.
      terminationGracePeriodSeconds: 1,
    });
    // Their command lines name files under the node's Kubernetes directory, as kubeadm's do: the agent
    // tells them apart by it.
    const kubeDir = dirname(node.manifestDir);
    await writeStandInApiServerManifest({
      manifestDir: node.manifestDir,
      fileName: apiServerManifestName,
      command: standInApiServerCommand({ port: node.apiServerPort, kubeDir }),
    });
    for (const [component, fileName, kubeconfig] of [
      ["kube-scheduler", schedulerManifestName, "scheduler.conf"],
      ["kube-controller-manager", controllerManagerManifestName, "controller-manager.conf"],
    ] as const) {
      await writeStandInComponentManifest({
        manifestDir: node.manifestDir,
        component,
        fileName,
        command: standInProcess(component, [`--kubeconfig=${join(kubeDir, kubeconfig)}`]),
      });
    }
  }
  try {
    await options.beforeStart?.(nodes);
  } catch (error) {
    await temp.remove();
    throw error;
  }
  const events: StaticPodEvent[] = [];
  const supervisor = startStaticPodSupervisor({
    nodes: nodes.map((node) => ({ name: node.name, manifestDir: node.manifestDir, logDir: node.logDir })),
    pollIntervalMs: 100,
    onEvent: (event) => events.push(event),
  });

  const etcdctl = async (args: string[], memberIndex = 0): Promise<string> => {
    const node = nodes[memberIndex];
    if (!node) throw new Error(`no member ${memberIndex}`);
    const { stdout } = await run(
      installed.etcdctlBinary,
      [`--endpoints=${node.clientUrl}`, "--dial-timeout=2s", ...args],
      {
        env: { ...process.env, ETCDCTL_API: "3" },
      },
    );
    return stdout;
  };

  const waitUntilHealthy = async (timeoutMs = 30_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (const node of nodes) {
      while (!(await isHealthy(node.clientUrl))) {
        if (Date.now() > deadline) {
          throw new Error(`etcd ${node.memberName} did not become healthy (logs in ${node.logDir})`);
        }
        await sleep(100);
      }
    }
  };

  const stop = async () => {
    await supervisor.stop();
    await temp.remove();
  };

  try {
    await waitUntilHealthy();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    baseDir: temp.path,
    installed,
    nodes,
    initialCluster,
    supervisor,
    events,
    etcdctl,
    waitUntilHealthy,
    stop,
  };
}

export async function isHealthy(clientUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
    return response.ok && ((await response.json()) as { health?: string }).health === "true";
  } catch {
    return false;
  }
}
