// Static-pod manifests (Pod objects in JSON, which the kubelet accepts as well as YAML) for a local etcd
// member and stand-ins for kube-apiserver, kube-scheduler and kube-controller-manager, shaped like
// kubeadm's, for the static-pod supervisor to run.
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
  /** Defaults to ETCD_BINARY (as the test harness reads it), else `etcd` from PATH, as kubeadm's names it. */
  etcdBinary?: string;
  /** The version the binary reports (`etcd --version`), named by the pod's image as kubeadm's does. */
  etcdVersion?: string;
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

export interface StandInComponentManifestOptions {
  manifestDir: string;
  /** The pod's and container's name, e.g. kube-scheduler. */
  component: string;
  /** Defaults to `<component>.json`. */
  fileName?: string;
  /** What runs in place of the component; by default standInProcess(component). */
  command?: string[];
}

/**
 * A process that only waits, but whose command line looks like the component's: `<component> <args...>`
 * (a kubeadm component names its kubeconfig under /etc/kubernetes), so that the restore agent can see it
 * with pgrep and wait until it has stopped, as on a real node.
 */
export function standInProcess(component: string, args: string[] = []): string[] {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, not a template
  return ["bash", "-c", 'exec -a "$0${*:+ $*}" sleep infinity', component, ...args];
}

/**
 * A stand-in kube-apiserver that answers `/readyz` on 127.0.0.1:`port` as kube-apiserver does: HTTP 500
 * until it is ready (`readyAfterMs` after it started; never when null), then 200 `ok`. Given the node's
 * Kubernetes directory (kubeadm's /etc/kubernetes), its command line names kube-apiserver and the cluster
 * CA under that directory, as kubeadm's does, so that the restore agent sees it with pgrep.
 */
export function standInApiServerCommand(options: {
  port: number;
  readyAfterMs?: number | null;
  kubeDir?: string;
  /** Serve https with this certificate, as kube-apiserver does, and name the port as its --secure-port. */
  tls?: { certFile: string; keyFile: string };
  /** More flags on its command line, e.g. `--anonymous-auth=false`. */
  flags?: string[];
}): string[] {
  const readyAfterMs = options.readyAfterMs === undefined ? 0 : options.readyAfterMs;
  const server = options.tls
    ? `require("node:https").createServer({ cert: require("node:fs").readFileSync(${JSON.stringify(options.tls.certFile)}), key: require("node:fs").readFileSync(${JSON.stringify(options.tls.keyFile)}) }, `
    : `require("node:http").createServer(`;
  const code = `const readyAfterMs = ${JSON.stringify(readyAfterMs)}; const started = Date.now();
${server}(request, response) => {
  if (request.url !== "/readyz") { response.statusCode = 404; response.end(); return; }
  const ready = readyAfterMs !== null && Date.now() - started >= readyAfterMs;
  response.statusCode = ready ? 200 : 500;
  response.end(ready ? "ok" : "[-]etcd failed: reason withheld; readyz check failed");
}).listen(${options.port}, "127.0.0.1");`;
  const flags = [
    ...(options.kubeDir ? [`--client-ca-file=${join(options.kubeDir, "pki/ca.crt")}`] : []),
    ...(options.tls ? [`--secure-port=${options.port}`] : []),
    ...(options.flags ?? []),
  ];
  const commandLine = flags.length > 0 ? ["--", "kube-apiserver", ...flags] : [];
  return [process.execPath, "-e", code, ...commandLine];
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
          // What the kubelet would pull; the supervisor runs the command, this machine's etcd.
          ...(options.etcdVersion ? { image: `registry.k8s.io/etcd:${options.etcdVersion}-0` } : {}),
          command: [options.etcdBinary ?? process.env.ETCD_BINARY ?? "etcd"],
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

/** Writes a control-plane component's manifest whose container is a stand-in process; returns its path. */
export async function writeStandInComponentManifest(
  options: StandInComponentManifestOptions,
): Promise<string> {
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: options.component,
      namespace: "kube-system",
      labels: { component: options.component, tier: "control-plane" },
    },
    spec: {
      hostNetwork: true,
      terminationGracePeriodSeconds: 5,
      containers: [
        { name: options.component, command: options.command ?? standInProcess(options.component) },
      ],
    },
  };
  return writeManifest(options.manifestDir, options.fileName ?? `${options.component}.json`, pod);
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
