// The local stand-in for the kubelet's static pods: it watches one manifest directory per "node" and runs
// each manifest's container command as a local process while the manifest is there, as the kubelet does
// with /etc/kubernetes/manifests. Moving a manifest out stops the process (SIGTERM, SIGKILL after the
// grace period); moving it back starts it again; a changed manifest restarts it; a process that exits is
// restarted with a backoff (restartPolicy Always). So the restore agent's barriers run against real
// process lifecycles, with the same script that runs on a control-plane node.
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";

export interface SupervisedNode {
  name: string;
  /** The directory whose manifests this node runs (the kubelet's staticPodPath). */
  manifestDir: string;
  /** Each pod's stdout and stderr go to `<logDir>/<pod>.log`. */
  logDir: string;
}

export interface StaticPodEvent {
  node: string;
  pod: string;
  type: "started" | "stopping" | "exited" | "invalid";
  detail?: string;
}

export interface StaticPodSupervisorOptions {
  nodes: SupervisedNode[];
  /** How often the manifest directories are read. */
  pollIntervalMs?: number;
  /** Grace period before SIGKILL when a pod sets no terminationGracePeriodSeconds. */
  defaultGracePeriodMs?: number;
  /** First and longest wait before restarting a pod whose process exited. */
  restartBackoffMs?: { initial: number; max: number };
  onEvent?: (event: StaticPodEvent) => void;
}

export interface StaticPodSupervisor {
  /** Whether the pod (its `metadata.name`) has a live process on the node. */
  running(node: string, podName: string): boolean;
  /** How many times the pod's process has been started on the node. */
  starts(node: string, podName: string): number;
  /** The process id of the pod's current process, if it runs. */
  pid(node: string, podName: string): number | undefined;
  stop(): Promise<void>;
}

// The part of a Pod the supervisor runs; the kubelet accepts JSON manifests as well as YAML.
const podManifestSchema = z.object({
  metadata: z.object({ name: z.string().min(1) }),
  spec: z.object({
    terminationGracePeriodSeconds: z.number().int().min(0).optional(),
    containers: z
      .array(
        z.object({
          name: z.string(),
          command: z.array(z.string()).optional(),
          args: z.array(z.string()).optional(),
          env: z.array(z.object({ name: z.string(), value: z.string().optional() })).optional(),
          workingDir: z.string().optional(),
        }),
      )
      .min(1),
  }),
});

interface RunningPod {
  podName: string;
  content: string;
  argv: string[];
  env: Record<string, string>;
  workingDir: string | undefined;
  gracePeriodMs: number;
  child: ChildProcess | undefined;
  starts: number;
  nextStartAt: number;
  backoffMs: number;
}

interface NodeState {
  node: SupervisedNode;
  /** By manifest file name. */
  pods: Map<string, RunningPod>;
  /** Processes being stopped, by pod name: a pod of the same name starts only after they are gone. */
  terminating: Map<string, { done: Promise<void>; children: Set<ChildProcess> }>;
  /** Manifests already reported as invalid, by content, so that each is reported once. */
  reportedInvalid: Set<string>;
}

export function startStaticPodSupervisor(options: StaticPodSupervisorOptions): StaticPodSupervisor {
  const pollIntervalMs = options.pollIntervalMs ?? 200;
  const defaultGracePeriodMs = options.defaultGracePeriodMs ?? 10_000;
  const backoff = options.restartBackoffMs ?? { initial: 500, max: 5_000 };
  const emit = (event: StaticPodEvent) => options.onEvent?.(event);
  const states = new Map<string, NodeState>(
    options.nodes.map((node) => [
      node.name,
      { node, pods: new Map(), terminating: new Map(), reportedInvalid: new Set() },
    ]),
  );
  let stopped = false;

  // A command that could not be spawned has no pid and never exits: it counts as not running.
  const isAlive = (child: ChildProcess | undefined): child is ChildProcess =>
    child?.pid !== undefined && child.exitCode === null && child.signalCode === null;

  const launch = async (state: NodeState, pod: RunningPod): Promise<void> => {
    await mkdir(state.node.logDir, { recursive: true });
    const log = createWriteStream(join(state.node.logDir, `${pod.podName}.log`), { flags: "a" });
    const [command, ...args] = pod.argv as [string, ...string[]];
    // Its own process group, so that a stand-in command's children stop with it.
    const child = spawn(command, args, {
      cwd: pod.workingDir ?? state.node.logDir,
      env: { ...process.env, ...pod.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.once("error", (error) =>
      emit({ node: state.node.name, pod: pod.podName, type: "exited", detail: String(error) }),
    );
    // Output can still arrive after "exit": the log ends only once both pipes have closed.
    child.once("close", () => log.end());
    child.once("exit", (code, signal) => {
      emit({ node: state.node.name, pod: pod.podName, type: "exited", detail: signal ?? `code ${code}` });
    });
    pod.child = child;
    pod.starts++;
    emit({ node: state.node.name, pod: pod.podName, type: "started", detail: `pid ${child.pid}` });
  };

  const terminate = (state: NodeState, pod: RunningPod): void => {
    const child = pod.child;
    pod.child = undefined;
    if (!isAlive(child)) return;
    emit({ node: state.node.name, pod: pod.podName, type: "stopping", detail: `pid ${child.pid}` });
    const previous = state.terminating.get(pod.podName);
    const children = previous?.children ?? new Set<ChildProcess>();
    children.add(child);
    const done = (previous?.done ?? Promise.resolve()).then(() => killGracefully(child, pod.gracePeriodMs));
    const entry = { done, children };
    state.terminating.set(pod.podName, entry);
    void done.then(() => {
      children.delete(child);
      if (state.terminating.get(pod.podName) === entry) state.terminating.delete(pod.podName);
    });
  };

  const reconcile = async (state: NodeState): Promise<void> => {
    const files = await readManifestFiles(state.node.manifestDir);
    for (const [fileName, pod] of state.pods) {
      const content = files.get(fileName);
      if (content === pod.content) continue;
      terminate(state, pod);
      state.pods.delete(fileName);
    }
    for (const [fileName, content] of files) {
      let pod = state.pods.get(fileName);
      if (!pod) {
        const parsed = parseManifest(content, defaultGracePeriodMs);
        if (typeof parsed === "string") {
          if (!state.reportedInvalid.has(content)) {
            state.reportedInvalid.add(content);
            emit({ node: state.node.name, pod: fileName, type: "invalid", detail: parsed });
          }
          continue;
        }
        pod = { ...parsed, content, child: undefined, starts: 0, nextStartAt: 0, backoffMs: backoff.initial };
        state.pods.set(fileName, pod);
      }
      if (isAlive(pod.child)) continue;
      if (pod.child !== undefined) {
        // It exited on its own: restart it, waiting longer each time, as the kubelet's CrashLoopBackOff.
        pod.child = undefined;
        pod.nextStartAt = Date.now() + pod.backoffMs;
        pod.backoffMs = Math.min(pod.backoffMs * 2, backoff.max);
      }
      if (Date.now() < pod.nextStartAt || state.terminating.has(pod.podName)) continue;
      await launch(state, pod);
    }
  };

  const exitHandler = () => {
    for (const state of states.values()) {
      for (const pod of state.pods.values()) {
        if (isAlive(pod.child) && pod.child.pid !== undefined) signalGroup(pod.child.pid, "SIGKILL");
      }
    }
  };
  process.once("exit", exitHandler);

  const loop = (async () => {
    while (!stopped) {
      for (const state of states.values()) {
        try {
          await reconcile(state);
        } catch (error) {
          emit({ node: state.node.name, pod: "", type: "invalid", detail: String(error) });
        }
      }
      await sleep(pollIntervalMs);
    }
  })();

  const find = (node: string, podName: string): RunningPod | undefined => {
    const state = states.get(node);
    if (!state) throw new Error(`the supervisor has no node ${node}`);
    return [...state.pods.values()].find((pod) => pod.podName === podName);
  };

  return {
    // A pod whose manifest is gone still runs until its process has exited, as `crictl ps` would show.
    running: (node, podName) =>
      isAlive(find(node, podName)?.child) ||
      [...(states.get(node)?.terminating.get(podName)?.children ?? [])].some(isAlive),
    starts: (node, podName) => find(node, podName)?.starts ?? 0,
    pid: (node, podName) => {
      const child = find(node, podName)?.child;
      return isAlive(child) ? child.pid : undefined;
    },
    async stop() {
      stopped = true;
      await loop;
      for (const state of states.values()) {
        for (const pod of state.pods.values()) terminate(state, pod);
        state.pods.clear();
      }
      await Promise.all(
        [...states.values()].flatMap((state) => [...state.terminating.values()].map((entry) => entry.done)),
      );
      process.removeListener("exit", exitHandler);
    },
  };
}

async function readManifestFiles(directory: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const entries = await readdir(directory, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    // The kubelet skips hidden files and does not descend into directories.
    if (!entry.isFile() || entry.name.startsWith(".")) continue;
    const content = await readFile(join(directory, entry.name), "utf8").catch(() => undefined);
    if (content !== undefined) files.set(entry.name, content);
  }
  return files;
}

function parseManifest(
  content: string,
  defaultGracePeriodMs: number,
): Pick<RunningPod, "podName" | "argv" | "env" | "workingDir" | "gracePeriodMs"> | string {
  let json: unknown;
  try {
    json = JSON.parse(content);
  } catch {
    return "not a JSON Pod manifest";
  }
  const parsed = podManifestSchema.safeParse(json);
  if (!parsed.success) return `not a Pod manifest: ${parsed.error.issues[0]?.message ?? "invalid"}`;
  const pod = parsed.data;
  const container = pod.spec.containers[0];
  if (!container) return "the Pod has no container";
  const argv = [...(container.command ?? []), ...(container.args ?? [])];
  if (argv.length === 0) return "the container has no command: a local pod cannot fall back to an image";
  const env = Object.fromEntries(
    (container.env ?? []).map((variable) => [variable.name, variable.value ?? ""]),
  );
  const grace = pod.spec.terminationGracePeriodSeconds;
  return {
    podName: pod.metadata.name,
    argv,
    env,
    workingDir: container.workingDir,
    gracePeriodMs: grace === undefined ? defaultGracePeriodMs : grace * 1000,
  };
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

async function killGracefully(child: ChildProcess, gracePeriodMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<"exited">((resolve) => child.once("exit", () => resolve("exited")));
  signalGroup(child.pid, "SIGTERM");
  const graceOver = new AbortController();
  const timeout = sleep(gracePeriodMs, "timeout" as const, { signal: graceOver.signal }).catch(
    () => "exited" as const,
  );
  const outcome = await Promise.race([exited, timeout]);
  graceOver.abort();
  if (outcome === "timeout") {
    signalGroup(child.pid, "SIGKILL");
    await exited;
  }
}
