// The local kubelet stand-in: static pods start when their manifest appears and stop when it goes, as
// the restore agent's barriers expect, with real processes.
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type StaticPodEvent,
  type StaticPodSupervisor,
  startStaticPodSupervisor,
} from "../../cli/local/static-pod-supervisor.js";
import { makeTempDir } from "../support/temp-dir.js";

function podManifest(name: string, command: string[], extra: Record<string, unknown> = {}) {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "kube-system" },
    spec: { terminationGracePeriodSeconds: 5, containers: [{ name, command, ...extra }] },
  });
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("static-pod supervisor", () => {
  let temp: { path: string; remove: () => Promise<void> };
  let manifestDir: string;
  let parkedDir: string;
  let supervisor: StaticPodSupervisor;
  let events: StaticPodEvent[];

  beforeEach(async () => {
    temp = await makeTempDir("supervisor");
    manifestDir = join(temp.path, "manifests");
    parkedDir = join(temp.path, "parked");
    await mkdir(manifestDir, { recursive: true });
    await mkdir(parkedDir, { recursive: true });
    events = [];
    supervisor = startStaticPodSupervisor({
      nodes: [{ name: "node-0", manifestDir, logDir: join(temp.path, "logs") }],
      pollIntervalMs: 50,
      restartBackoffMs: { initial: 100, max: 400 },
      onEvent: (event) => events.push(event),
    });
  });

  afterEach(async () => {
    await supervisor.stop();
    await temp.remove();
  });

  it("starts a pod when its manifest appears and stops its process when the manifest is moved away", async () => {
    await writeFile(
      join(manifestDir, "kube-apiserver.json"),
      podManifest("kube-apiserver", ["sleep", "infinity"]),
    );
    await expect.poll(() => supervisor.running("node-0", "kube-apiserver")).toBe(true);
    const pid = supervisor.pid("node-0", "kube-apiserver") as number;
    expect(isProcessAlive(pid)).toBe(true);

    await rename(join(manifestDir, "kube-apiserver.json"), join(parkedDir, "kube-apiserver.json"));
    await expect.poll(() => supervisor.running("node-0", "kube-apiserver")).toBe(false);
    expect(isProcessAlive(pid)).toBe(false);

    await rename(join(parkedDir, "kube-apiserver.json"), join(manifestDir, "kube-apiserver.json"));
    await expect.poll(() => supervisor.running("node-0", "kube-apiserver")).toBe(true);
    expect(supervisor.pid("node-0", "kube-apiserver")).not.toBe(pid);
  });

  it("passes the container's command, args and env and writes its output to the pod's log", async () => {
    const script = 'echo "$GREETING $0"; exec sleep infinity'; // args follow the command: $0 here
    await writeFile(
      join(manifestDir, "echo.json"),
      podManifest("echo", ["bash", "-c", script], {
        args: ["from-args"],
        env: [{ name: "GREETING", value: "hello" }],
      }),
    );
    const log = join(temp.path, "logs", "echo.log");
    await expect
      .poll(async () => (existsSync(log) ? await readFile(log, "utf8") : ""))
      .toBe("hello from-args\n");
  });

  it("kills a process that ignores SIGTERM once the grace period is over", async () => {
    const stubborn = ["bash", "-c", "trap '' TERM; while :; do sleep 0.05; done"];
    await writeFile(
      join(manifestDir, "stubborn.json"),
      JSON.stringify({
        metadata: { name: "stubborn" },
        spec: { terminationGracePeriodSeconds: 1, containers: [{ name: "stubborn", command: stubborn }] },
      }),
    );
    await expect.poll(() => supervisor.running("node-0", "stubborn")).toBe(true);
    const removedAt = Date.now();
    await rm(join(manifestDir, "stubborn.json"));
    await sleep(500);
    expect(supervisor.running("node-0", "stubborn")).toBe(true);
    await expect.poll(() => supervisor.running("node-0", "stubborn"), { timeout: 4000 }).toBe(false);
    expect(Date.now() - removedAt).toBeGreaterThanOrEqual(1000);
  });

  it("restarts a pod whose process exits, as restartPolicy Always does", async () => {
    const counter = join(temp.path, "starts");
    await writeFile(
      join(manifestDir, "crash.json"),
      podManifest("crash", ["bash", "-c", `echo x >> "${counter}"; exit 1`]),
    );
    const linesWritten = async () =>
      existsSync(counter) ? (await readFile(counter, "utf8")).split("\n").filter(Boolean).length : 0;
    await expect.poll(linesWritten, { timeout: 5000 }).toBeGreaterThanOrEqual(3);
    expect(supervisor.starts("node-0", "crash")).toBeGreaterThanOrEqual(3);
  });

  it("restarts a pod whose manifest changes", async () => {
    await writeFile(join(manifestDir, "pod.json"), podManifest("pod", ["sleep", "1000"]));
    await expect.poll(() => supervisor.running("node-0", "pod")).toBe(true);
    const first = supervisor.pid("node-0", "pod") as number;
    await writeFile(join(manifestDir, ".pod.json.partial"), podManifest("pod", ["sleep", "2000"]));
    await rename(join(manifestDir, ".pod.json.partial"), join(manifestDir, "pod.json"));
    await expect
      .poll(() => supervisor.pid("node-0", "pod") !== undefined && supervisor.pid("node-0", "pod") !== first)
      .toBe(true);
    expect(isProcessAlive(first)).toBe(false);
  });

  it("skips hidden files and reports a manifest it cannot run", async () => {
    await writeFile(join(manifestDir, ".hidden.json"), podManifest("hidden", ["sleep", "infinity"]));
    await writeFile(join(manifestDir, "broken.yaml"), "apiVersion: v1\nkind: Pod\n");
    await expect
      .poll(() => events.some((event) => event.type === "invalid" && event.pod === "broken.yaml"))
      .toBe(true);
    expect(supervisor.running("node-0", "hidden")).toBe(false);
  });
});
