// Static-pod manifests (Pod objects in JSON, which the kubelet accepts as well as YAML) for a local etcd
// member and a stand-in kube-apiserver, shaped like kubeadm's, for the static-pod supervisor to run.
import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface EtcdManifestOptions {
  manifestDir: string;
  /** Defaults to etcd.json. */
  fileName?: string;
  /** The member name (`--name`). */
  name: string;
  dataDir: string;
  clientUrl: string;
  peerUrl: string;
  /** Every member's `name=peerUrl`, comma-separated. */
  initialCluster: string;
  initialClusterToken?: string;
  initialClusterState?: "new" | "existing";
  /** Defaults to Debian's /usr/bin/etcd (or ETCD_BINARY, as the test harness reads it). */
  etcdBinary?: string;
  extraArgs?: string[];
  terminationGracePeriodSeconds?: number;
}

export interface StandInApiServerManifestOptions {
  manifestDir: string;
  /** Defaults to kube-apiserver.json. */
  fileName?: string;
  /** What runs in place of kube-apiserver; by default a process that only waits. */
  command?: string[];
}

/** Writes etcd's static-pod manifest and returns its path. */
export async function writeEtcdManifest(options: EtcdManifestOptions): Promise<string> {
  const args = [
    `--name=${options.name}`,
    `--data-dir=${options.dataDir}`,
    `--listen-client-urls=${options.clientUrl}`,
    `--advertise-client-urls=${options.clientUrl}`,
    `--listen-peer-urls=${options.peerUrl}`,
    `--initial-advertise-peer-urls=${options.peerUrl}`,
    `--initial-cluster=${options.initialCluster}`,
    `--initial-cluster-state=${options.initialClusterState ?? "new"}`,
    `--initial-cluster-token=${options.initialClusterToken ?? "etcd-cluster"}`,
    "--logger=zap",
    "--log-level=warn",
    "--heartbeat-interval=50",
    "--election-timeout=500",
    ...(options.extraArgs ?? []),
  ];
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: "etcd",
      namespace: "kube-system",
      labels: { component: "etcd", tier: "control-plane" },
    },
    spec: {
      hostNetwork: true,
      priorityClassName: "system-node-critical",
      terminationGracePeriodSeconds: options.terminationGracePeriodSeconds ?? 10,
      containers: [
        {
          name: "etcd",
          image: "registry.k8s.io/etcd:3.4.23-0",
          command: [options.etcdBinary ?? process.env.ETCD_BINARY ?? "/usr/bin/etcd"],
          args,
          volumeMounts: [{ name: "etcd-data", mountPath: options.dataDir }],
        },
      ],
      volumes: [{ name: "etcd-data", hostPath: { path: options.dataDir, type: "DirectoryOrCreate" } }],
    },
  };
  return writeManifest(options.manifestDir, options.fileName ?? "etcd.json", pod);
}

/** Writes a kube-apiserver manifest whose container is a stand-in process, and returns its path. */
export async function writeStandInApiServerManifest(
  options: StandInApiServerManifestOptions,
): Promise<string> {
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: "kube-apiserver",
      namespace: "kube-system",
      labels: { component: "kube-apiserver", tier: "control-plane" },
    },
    spec: {
      hostNetwork: true,
      terminationGracePeriodSeconds: 5,
      containers: [{ name: "kube-apiserver", command: options.command ?? ["sleep", "infinity"] }],
    },
  };
  return writeManifest(options.manifestDir, options.fileName ?? "kube-apiserver.json", pod);
}

// Written beside under a hidden name and renamed, so that a watcher never reads half a manifest.
async function writeManifest(directory: string, fileName: string, pod: unknown): Promise<string> {
  await mkdir(directory, { recursive: true });
  const path = join(directory, fileName);
  const partial = join(directory, `.${fileName}.partial`);
  await writeFile(partial, `${JSON.stringify(pod, null, 2)}\n`);
  await rename(partial, path);
  return path;
}
