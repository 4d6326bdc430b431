// Runs one command and reports its wall time, peak resident set size and CPU time. GNU time (`/usr/bin/time`)
// gives the kernel's own figure (getrusage ru_maxrss); without it, /proc/PID/status VmHWM is polled.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface ProcessMeasurement {
  wallMs: number;
  /** Peak RSS in bytes. */
  peakRssBytes: number;
  /** User plus system CPU time of the process, when GNU time is there to report it. */
  cpuSeconds: number | undefined;
  stdout: string;
  stderr: string;
}

const gnuTime = "/usr/bin/time";
export const rssMethod = existsSync(gnuTime)
  ? "GNU time `/usr/bin/time -f '%M %U %S'` (maximum resident set size, user and system CPU time)"
  : "/proc/PID/status VmHWM polled every 20 ms";

/** The command line that runs `command` under GNU time writing to `timeFile`; as it is without GNU time. */
export function underGnuTime(command: string, args: string[], timeFile: string): [string, string[]] {
  return existsSync(gnuTime)
    ? [gnuTime, ["-f", "%M %U %S", "-o", timeFile, command, ...args]]
    : [command, args];
}

/** What GNU time wrote to `timeFile` (then removed); undefined without GNU time or its file. */
export async function readGnuTime(
  timeFile: string,
): Promise<{ peakRssBytes: number; cpuSeconds: number } | undefined> {
  if (!existsSync(gnuTime)) return undefined;
  const text = await readFile(timeFile, "utf8").catch(() => "");
  await rm(timeFile, { force: true });
  // GNU time prints "Command exited with non-zero status N" before the figures when the command fails.
  const [peak, user, system] = (text.trim().split("\n").at(-1) ?? "").split(" ").map(Number);
  return { peakRssBytes: (peak ?? 0) * 1024, cpuSeconds: (user ?? 0) + (system ?? 0) };
}

export async function measureProcess(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<ProcessMeasurement> {
  const useGnuTime = existsSync(gnuTime);
  const timeFile = join(tmpdir(), `bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const [file, argv] = underGnuTime(command, args, timeFile);
  const started = performance.now();
  const child = spawn(file, argv, {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  let polledPeak = 0;
  const poll = useGnuTime
    ? undefined
    : setInterval(() => {
        readFile(`/proc/${child.pid}/status`, "utf8").then(
          (status) => {
            const kib = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
            polledPeak = Math.max(polledPeak, kib);
          },
          () => undefined,
        );
      }, 20);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  const wallMs = performance.now() - started;
  if (poll) clearInterval(poll);
  const timed = await readGnuTime(timeFile);
  if (code !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited with ${code}:\n${stderr.slice(-2000)}`);
  }
  return {
    wallMs,
    peakRssBytes: timed?.peakRssBytes ?? polledPeak * 1024,
    cpuSeconds: timed?.cpuSeconds,
    stdout,
    stderr,
  };
}

const clockTicksPerSecond = 100;

/** CPU seconds (user + system) a running process has used so far, from /proc/PID/stat. */
export async function processCpuSeconds(pid: number): Promise<number> {
  return (await processCpuTimes(pid)).own;
}

/**
 * CPU seconds (user + system) of a running process so far, and of its children it has waited for (the
 * commands the Kubernetes API stand-in runs "in the pod": sh, etcdctl, cat), from /proc/PID/stat.
 */
export async function processCpuTimes(pid: number): Promise<{ own: number; waitedForChildren: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may itself hold spaces: utime, stime,
  // cutime, cstime are the 14th to 17th of the whole line.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    own: (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond,
    waitedForChildren: (Number(fields[13]) + Number(fields[14])) / clockTicksPerSecond,
  };
}
