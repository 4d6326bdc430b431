// The stand-in's kubelet for pods created through the API (option `runCreatedPods`): a created pod bound
// to a node runs its one container as a local process, as the kubelet runs it on that node, so that a
// test can follow what such a pod does (the restore's agent pods). What a container would see is served
// from local directories: a hostPath volume must be mounted at its own path (the local filesystem is the
// node's), a Secret volume's items and an emptyDir are written to a directory of the pod, and the
// container's command, args and environment are rewritten to name that directory where they name the
// mount path (an emptyDir at /tmp becomes TMPDIR). The environment is the pod's own (value and
// secretKeyRef) on top of PATH and HOME only, as a container's is on top of its image's.
//
// As the kubelet does: a pod whose hostPath of type Directory is missing, or whose Secret (or key) is
// missing, stays Pending and never runs — a mount failure with its container ContainerCreating and a
// FailedMount event, a missing env key with CreateContainerConfigError and the kubelet's message; a pod runs once (restartPolicy Never, the
// only policy supported) and ends Succeeded or Failed with its exit code; deletion sends SIGTERM to the
// container's process group and SIGKILL after terminationGracePeriodSeconds.
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, existsSync, statSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

interface PostedVolume {
  name: string;
  hostPath?: { path: string; type?: string };
  secret?: { secretName: string; items?: Array<{ key: string; path: string }>; defaultMode?: number };
  emptyDir?: Record<string, unknown>;
}

interface PostedContainer {
  name: string;
  command?: string[];
  args?: string[];
  env?: Array<{
    name: string;
    value?: string;
    valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } };
  }>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}

/** The part of a posted pod spec the runner reads. */
export interface PostedPodSpec {
  restartPolicy?: string;
  terminationGracePeriodSeconds?: number;
  volumes?: PostedVolume[];
  containers: PostedContainer[];
}

/** What the kubelet reports of a pod it was given. */
export type PodRunState =
  | {
      phase: "Pending";
      waitingReason: string;
      waitingMessage?: string;
      /** The Warning event the kubelet records about the pod. */
      event: { reason: string; message: string };
    }
  | { phase: "Running" }
  | { phase: "Succeeded" | "Failed"; exitCode: number };

export interface CreatedPodRunnerOptions {
  /** Added to every container's environment: a test's knobs (such as a shorter poll interval). */
  env?: Record<string, string>;
}

export interface PodRun {
  /** The container's stdout and stderr, as `kubectl logs` would show them. */
  logFile: string;
  /** Stops the container as a deletion does; resolves when its process has exited. */
  stop(): Promise<void>;
  /** Resolves when the container has exited (or never started). */
  exited: Promise<void>;
}

/** A pod's Secret data by namespace and name, or undefined where there is no such Secret. */
export type SecretLookup = (name: string) => Record<string, Buffer> | undefined;

/** Why the kubelet cannot start the container: a volume it cannot mount, or its config. */
class PodConfigError extends Error {
  constructor(
    readonly kind: "mount" | "config",
    message: string,
  ) {
    super(message);
  }

  /** As the kubelet reports it: the container's waiting state, and a Warning event. */
  get state(): PodRunState {
    return this.kind === "mount"
      ? {
          phase: "Pending",
          waitingReason: "ContainerCreating",
          event: { reason: "FailedMount", message: this.message },
        }
      : {
          phase: "Pending",
          waitingReason: "CreateContainerConfigError",
          waitingMessage: this.message,
          event: { reason: "Failed", message: `Error: ${this.message}` },
        };
  }
}

/** Starts a created pod's container in `podDir`; `report` receives each change of its state. */
export async function runCreatedPod(
  namespace: string,
  spec: PostedPodSpec,
  podDir: string,
  secrets: SecretLookup,
  report: (state: PodRunState) => void,
  options: CreatedPodRunnerOptions = {},
): Promise<PodRun> {
  const logFile = join(podDir, "container.log");
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  try {
    const container = singleContainer(spec);
    const relocations = await prepareVolumes(spec, container, podDir, secrets);
    const env = containerEnvironment(container, namespace, secrets, relocations, options.env ?? {});
    const [executable, ...argv] = [...(container.command ?? []), ...(container.args ?? [])].map((word) =>
      relocate(word, relocations),
    );
    if (!executable) throw new PodConfigError("config", "the container has no command");
    const log = createWriteStream(logFile);
    child = spawn(executable, argv, { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    const started = child;
    exited = new Promise((resolve) => {
      started.once("error", (error) => {
        log.end(`${String(error)}\n`);
        report({ phase: "Failed", exitCode: 128 });
        resolve();
      });
      started.once("close", (code, signal) => {
        log.end();
        const exitCode = code ?? 128 + signalNumber(signal);
        report({ phase: exitCode === 0 ? "Succeeded" : "Failed", exitCode });
        resolve();
      });
    });
    report({ phase: "Running" });
  } catch (error) {
    if (!(error instanceof PodConfigError)) throw error;
    report(error.state);
  }
  const graceMs = (spec.terminationGracePeriodSeconds ?? 30) * 1000;
  return {
    logFile,
    exited,
    async stop() {
      const running = child;
      if (!running?.pid || running.exitCode !== null || running.signalCode !== null) return exited;
      signalGroup(running, "SIGTERM");
      const timer = setTimeout(() => signalGroup(running, "SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

function singleContainer(spec: PostedPodSpec): PostedContainer {
  if (spec.restartPolicy !== "Never") {
    throw new Error(
      `the stand-in runs created pods with restartPolicy Never only, not ${spec.restartPolicy}`,
    );
  }
  const [container, ...others] = spec.containers;
  if (!container || others.length > 0) throw new Error("the stand-in runs created pods of one container");
  return container;
}

/** A mount path served from another local directory. */
interface Relocation {
  mountPath: string;
  localPath: string;
}

async function prepareVolumes(
  spec: PostedPodSpec,
  container: PostedContainer,
  podDir: string,
  secrets: SecretLookup,
): Promise<Relocation[]> {
  const relocations: Relocation[] = [];
  for (const mount of container.volumeMounts ?? []) {
    const volume = spec.volumes?.find((candidate) => candidate.name === mount.name);
    if (!volume) {
      throw new PodConfigError("config", `volume ${mount.name} is not in the pod`);
    }
    if (volume.hostPath) {
      const { path, type } = volume.hostPath;
      if (mount.mountPath !== path) {
        throw new Error(`the stand-in mounts a hostPath at its own path only: ${path} at ${mount.mountPath}`);
      }
      if (type === "Directory" && !(existsSync(path) && statSync(path).isDirectory())) {
        throw new PodConfigError(
          "mount",
          `MountVolume.SetUp failed for volume "${volume.name}" : hostPath type check failed: ${path} is not a directory`,
        );
      }
      // Served as itself, also where it lies inside a relocated mount (a host dir under an emptyDir /tmp).
      relocations.push({ mountPath: path.replace(/\/+$/, ""), localPath: path });
      continue;
    }
    const localPath = join(podDir, "volumes", volume.name);
    await mkdir(localPath, { recursive: true });
    if (volume.secret) await writeSecretVolume(volume.name, volume.secret, localPath, secrets);
    else if (!volume.emptyDir) throw new Error(`the stand-in cannot mount volume ${volume.name}`);
    relocations.push({ mountPath: mount.mountPath.replace(/\/+$/, ""), localPath });
  }
  return relocations.sort((a, b) => b.mountPath.length - a.mountPath.length);
}

async function writeSecretVolume(
  volumeName: string,
  source: NonNullable<PostedVolume["secret"]>,
  directory: string,
  secrets: SecretLookup,
): Promise<void> {
  const data = secrets(source.secretName);
  if (!data) {
    throw new PodConfigError(
      "mount",
      `MountVolume.SetUp failed for volume "${volumeName}" : secret "${source.secretName}" not found`,
    );
  }
  const items = source.items ?? Object.keys(data).map((key) => ({ key, path: key }));
  for (const item of items) {
    const value = data[item.key];
    if (value === undefined) {
      throw new PodConfigError(
        "mount",
        `MountVolume.SetUp failed for volume "${volumeName}" : references non-existent secret key: ${item.key}`,
      );
    }
    const file = join(directory, item.path);
    await writeFile(file, value);
    await chmod(file, source.defaultMode ?? 0o644);
  }
}

function containerEnvironment(
  container: PostedContainer,
  namespace: string,
  secrets: SecretLookup,
  relocations: Relocation[],
  extra: Record<string, string>,
): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: process.env.HOME ?? "/root",
  };
  const tmp = relocations.find(
    (relocation) => relocation.mountPath === "/tmp" && relocation.localPath !== "/tmp",
  );
  if (tmp) env.TMPDIR = tmp.localPath;
  for (const variable of container.env ?? []) {
    const reference = variable.valueFrom?.secretKeyRef;
    if (!reference) {
      env[variable.name] = relocate(variable.value ?? "", relocations);
      continue;
    }
    const value = secrets(reference.name)?.[reference.key];
    if (value === undefined) {
      if (reference.optional) continue;
      throw new PodConfigError(
        "config",
        `couldn't find key ${reference.key} in Secret ${namespace}/${reference.name}`,
      );
    }
    env[variable.name] = value.toString("utf8");
  }
  return { ...env, ...extra };
}

/** A word of the command with each relocated mount path replaced by its local directory, in one pass. */
function relocate(word: string, relocations: Relocation[]): string {
  if (relocations.length === 0) return word;
  // Longest first (the order of `relocations`), so that a path inside two mounts is served by the inner.
  const paths = relocations.map((relocation) => escapeRegExp(relocation.mountPath)).join("|");
  return word.replace(
    new RegExp(`(^|[\\s"'=:])(${paths})(?=/|$|[\\s"'])`, "g"),
    (_match, before: string, mountPath: string) =>
      `${before}${relocations.find((relocation) => relocation.mountPath === mountPath)?.localPath}`,
  );
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-(child.pid as number), signal);
  } catch {
    child.kill(signal);
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === "SIGKILL" ? 9 : signal === "SIGTERM" ? 15 : 1;
}
