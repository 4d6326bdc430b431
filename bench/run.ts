// `npm run bench`: measures the product against references taken in the same run on this machine and
// writes docs/benchmarks.json (every sample) and docs/benchmarks.md (the report). Knobs:
//   BENCH_SIZES=256,1024          database sizes in MiB measured in full (each database built once under
//                                 bench/.cache/, then reused)
//   BENCH_RUNS=3                  runs per figure (the median is reported)
//   BENCH_MEMORY_SIZES=2048       sizes measured for peak RSS only (product to file, to S3, slow sink); ""
//                                 for none
//   BENCH_MEMORY_RUNS=1
//   BENCH_SLOW_SINK_MIBPS=64      rate of a slow sink the snapshot is streamed into, at the largest size
//   BENCH_SLOW_SINK_RUNS=1
//   BENCH_LOADS=9                 fresh-process imports per handler bundle (round-robin over the handlers)
//   BENCH_PART_SETTINGS=16x2,5x4  extra part MiB × parts-in-flight settings for the S3 path, at each size
//   BENCH_KUBE_SOURCES=exec,port-forward
//                                 sources through the stand-in Kubernetes API server (own process) into S3;
//                                 "" for none. Each also runs into the slow sink at the largest size
//   BENCH_KUBE_SIZES=256          full sizes at which they run (exec saves in the pod, then streams it out)
//   BENCH_RESTORE_SIZE=1024       database size in MiB whose snapshot the restore section restores
//   BENCH_SECTIONS=snapshot,restore,cold-start
//                                 a run of some sections keeps the others' figures from docs/benchmarks.json
//   BENCH_BUDGET_SECONDS=600      a size whose estimated time would overrun the budget is skipped (reported)
//   BENCH_RENDER_ONLY=1           only re-render docs/benchmarks.md from docs/benchmarks.json
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { defaultPartSize, defaultPartsInFlight } from "../lambdas/core/store/multipart-upload-sink.js";
import { bundleLikeLambda, prepareBuildDir } from "./bundle.js";
import { measureColdStarts } from "./cold-start.js";
import { openBenchDatabase } from "./etcd-databases.js";
import { measureProcess, rssMethod } from "./measure-process.js";
import type { WorkerResult } from "./product-worker.js";
import { type BenchResults, renderReport } from "./report.js";
import { benchRestore } from "./restore-bench.js";
import { startS3EndpointProcess } from "./s3-endpoint-process.js";
import {
  benchKubeSlowSink,
  benchMemory,
  benchSlowSink,
  benchSnapshotSize,
  etcdctl,
  type KubeSourceName,
  kubeSourceNames,
  type SnapshotSizeFigures,
  type VerifySizeFigures,
} from "./snapshot-bench.js";

const mebibyte = 1024 * 1024;
const projectRoot = join(import.meta.dirname, "..");
const docsDir = join(projectRoot, "docs");

if (process.env.BENCH_RENDER_ONLY) {
  const saved = JSON.parse(readFileSync(join(docsDir, "benchmarks.json"), "utf8")) as BenchResults;
  await writeFile(join(docsDir, "benchmarks.md"), renderReport(saved));
  process.exit(0);
}

function numberList(name: string, fallback: string): number[] {
  const values = (process.env[name] ?? fallback).split(",").map((value) => Number(value.trim()));
  if (values.some((value) => !Number.isFinite(value) || value <= 0)) {
    throw new Error(`${name} must be a comma-separated list of positive numbers`);
  }
  return values;
}

const sizes = numberList("BENCH_SIZES", "256,1024").sort((a, b) => a - b);
const memorySizes =
  process.env.BENCH_MEMORY_SIZES === "" ? [] : numberList("BENCH_MEMORY_SIZES", "2048").sort((a, b) => a - b);
const memoryRuns = numberList("BENCH_MEMORY_RUNS", "1")[0] as number;
const runs = numberList("BENCH_RUNS", "3")[0] as number;
const slowSinkMebibytesPerSecond = numberList("BENCH_SLOW_SINK_MIBPS", "64")[0] as number;
const slowSinkRuns = numberList("BENCH_SLOW_SINK_RUNS", "1")[0] as number;
const loads = numberList("BENCH_LOADS", "9")[0] as number;
const budgetSeconds = numberList("BENCH_BUDGET_SECONDS", "600")[0] as number;
const restoreSize = numberList("BENCH_RESTORE_SIZE", "1024")[0] as number;
/** About what the cold-start section takes here (17 handlers, 2 builds and 9 loads each), kept in reserve. */
const coldStartReserveSeconds = 90;
/** About what the restore section takes here at 1 GiB (3 runs of the agent and of the hand method). */
const restoreReserveSeconds = 120;
const allSections = ["snapshot", "restore", "cold-start"] as const;
const sections = new Set((process.env.BENCH_SECTIONS ?? allSections.join(",")).split(","));
for (const section of sections) {
  if (!(allSections as readonly string[]).includes(section)) {
    throw new Error(`BENCH_SECTIONS: "${section}" is none of ${allSections.join(", ")}`);
  }
}
const partSettings = (process.env.BENCH_PART_SETTINGS ?? "")
  .split(",")
  .filter(Boolean)
  .map((setting) => {
    const [size, inFlight] = setting.split("x").map(Number);
    if (!size || !inFlight) throw new Error(`BENCH_PART_SETTINGS: "${setting}" is not MiBxCOUNT`);
    return { partSize: size * mebibyte, partsInFlight: inFlight };
  });

const kubeSources = (process.env.BENCH_KUBE_SOURCES ?? kubeSourceNames.join(","))
  .split(",")
  .filter(Boolean)
  .map((name) => {
    if (!(kubeSourceNames as readonly string[]).includes(name)) {
      throw new Error(`BENCH_KUBE_SOURCES: "${name}" is none of ${kubeSourceNames.join(", ")}`);
    }
    return name as KubeSourceName;
  });
const kubeSizes = process.env.BENCH_KUBE_SIZES === "" ? [] : numberList("BENCH_KUBE_SIZES", "256");
const kubeSourcesAt = (size: number) => (kubeSizes.includes(size) ? kubeSources : []);

/** The seconds of the samples through the Kubernetes API, which run only at BENCH_KUBE_SIZES. */
function secondsThroughKube(snapshot: SnapshotSizeFigures): number {
  const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
  const methods = [snapshot.kube?.execToS3, snapshot.kube?.portForwardToS3];
  return sum(methods.map((figures) => (figures ? sum(figures.seconds.samples) : 0)));
}

/** The seconds of every sample of a size: the part of its time that grows with the database. */
function secondsMovingBytes(snapshot: SnapshotSizeFigures, verify: VerifySizeFigures): number {
  const methods = [
    ...Object.values(snapshot.methods),
    ...(snapshot.slowSink ? [snapshot.slowSink] : []),
    ...(snapshot.partSettings ?? []).map((setting) => setting.figures),
    ...Object.values(verify.methods),
  ];
  const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
  return sum(methods.map((figures) => sum(figures.seconds.samples))) + verify.cliVerifySeconds;
}

const started = Date.now();
const log = (line: string) =>
  process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);

// The machine's load while the bench runs: other work on the 2 cores moves every figure.
const loadSamples: number[] = [];
const loadTimer = setInterval(() => loadSamples.push(loadavg()[0] as number), 5000);

const childEnv = {
  ...process.env,
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  ETCDCTL_API: "3",
};
const firstLine = (command: string, args: string[]) =>
  execFileSync(command, args, { encoding: "utf8" }).split("\n")[0]?.trim() ?? "";
const machine = {
  cpu: /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown",
  cores: availableParallelism(),
  memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
  node: process.version,
  etcd: firstLine("/usr/bin/etcd", ["--version"]),
  etcdctl: firstLine(etcdctl, ["version"]),
  rssMethod,
  loadAverageAtStart: loadavg()[0] as number,
  busiestOtherProcesses: execFileSync("ps", ["-eo", "pcpu,rss,args", "--sort=-pcpu"], { encoding: "utf8" })
    .split("\n")
    .slice(1, 7)
    .map((line) => line.trim().slice(0, 120))
    .filter(Boolean),
};
log(
  `${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.etcd}`,
);

const buildDir = await prepareBuildDir();
const workerBundle = join(buildDir, "product-worker.mjs");
await bundleLikeLambda([join(import.meta.dirname, "product-worker.ts")], buildDir);

// Other work lands in the tree while the bench runs: record exactly what was measured.
const git = (...args: string[]) => execFileSync("git", args, { cwd: projectRoot, encoding: "utf8" }).trim();
const source = {
  commit: git("rev-parse", "--short", "HEAD"),
  // Not through git(): its trim would cut the first line's leading status column.
  uncommittedProductFiles: execFileSync("git", ["status", "--porcelain", "--", "lambdas", "cli", "bin"], {
    cwd: projectRoot,
    encoding: "utf8",
  })
    .split("\n")
    .filter(Boolean)
    .map((line) => line.slice(3)),
};

const results: BenchResults = {
  generatedAt: new Date().toISOString(),
  source,
  // As a shell runs it: the knobs this run was given, then the command.
  command: `${[
    "BENCH_SIZES",
    "BENCH_RUNS",
    "BENCH_MEMORY_SIZES",
    "BENCH_MEMORY_RUNS",
    "BENCH_SLOW_SINK_MIBPS",
    "BENCH_SLOW_SINK_RUNS",
    "BENCH_LOADS",
    "BENCH_PART_SETTINGS",
    "BENCH_KUBE_SOURCES",
    "BENCH_KUBE_SIZES",
    "BENCH_RESTORE_SIZE",
    "BENCH_SECTIONS",
    "BENCH_BUDGET_SECONDS",
  ]
    .filter((name) => process.env[name] !== undefined)
    .map((name) => `${name}=${process.env[name]} `)
    .join("")}npm run bench`,
  machine: { ...machine, loadAverageMean: 0, loadAverageAtEnd: 0 },
  settings: {
    sizesMebibytes: sizes,
    runs,
    partSize: defaultPartSize,
    partsInFlight: defaultPartsInFlight,
    slowSinkBytesPerSecond: slowSinkMebibytesPerSecond * mebibyte,
    loads,
  },
  databases: [],
  snapshot: [],
  verify: [],
  memory: [],
  restore: [],
  coldStart: [],
  skippedSizes: [],
  durationSeconds: 0,
};

if (sections.has("snapshot")) {
  const rates = await measureProcess(
    process.execPath,
    [workerBundle, JSON.stringify({ kind: "component-rates", mebibytes: 512 })],
    { env: childEnv },
  );
  results.componentRates = (JSON.parse(rates.stdout) as WorkerResult).details;
  log(`component rates: ${JSON.stringify(results.componentRates)}`);

  const s3 = await startS3EndpointProcess();
  const context = { runs, workerBundle, s3, log, env: childEnv };
  let buildSeconds = 0;
  const open = async (size: number) => {
    log(`database of ${size} MiB: opening (built once, then reused from bench/.cache/)`);
    const database = await openBenchDatabase(size);
    buildSeconds += database.buildMs / 1000;
    if (database.built) log(`database of ${size} MiB: built in ${(database.buildMs / 1000).toFixed(0)} s`);
    results.databases.push({
      sizeMebibytes: size,
      databaseBytes: database.databaseBytes,
      builtThisRun: database.built,
      buildSeconds: database.buildMs / 1000,
    });
    return database;
  };
  /** Whether `estimate` more seconds still fit the budget; building databases is not counted. */
  const fits = (estimate: number) =>
    (Date.now() - started) / 1000 -
      buildSeconds +
      estimate +
      (sections.has("restore") ? restoreReserveSeconds : 0) +
      (sections.has("cold-start") ? coldStartReserveSeconds : 0) <=
    budgetSeconds;
  const skip = (size: number, estimate: number) => {
    const reason = `an estimated ${estimate.toFixed(0)} s more would overrun the ${budgetSeconds} s budget`;
    log(`database of ${size} MiB: skipped, ${reason}`);
    results.skippedSizes.push({ sizeMebibytes: size, reason });
  };
  const slowSinkSeconds = (size: number) => (size / slowSinkMebibytesPerSecond) * slowSinkRuns;
  /**
   * A source through the stand-in API server into the slow sink: exec first saves at full speed in the pod
   * (as long as `etcdctl snapshot save`), then `cat` is held back; port-forward is held back from the start.
   */
  const kubeSlowSinkSeconds = (
    source: KubeSourceName,
    size: number,
    runCount: number,
    reference: SnapshotSizeFigures,
  ) => {
    const save =
      source === "exec" ? (size / reference.sizeMebibytes) * reference.methods.etcdctlSave.seconds.median : 0;
    return 5 + runCount * (save + size / slowSinkMebibytesPerSecond);
  };
  /**
   * The sources through the stand-in API server (BENCH_KUBE_SOURCES) that still fit into the slow sink
   * after `estimate` more seconds, in turn; a source that would overrun the budget is skipped and reported.
   */
  const kubeSlowSinkSources = (
    size: number,
    estimate: number,
    runCount: number,
    reference: SnapshotSizeFigures,
  ): KubeSourceName[] => {
    const chosen: KubeSourceName[] = [];
    let planned = estimate;
    for (const source of kubeSources) {
      const more = kubeSlowSinkSeconds(source, size, runCount, reference);
      if (fits(planned + more)) {
        chosen.push(source);
        planned += more;
        continue;
      }
      const reason = `only the ${source} source into the slow sink: an estimated ${more.toFixed(0)} s more would overrun the ${budgetSeconds} s budget`;
      log(`database of ${size} MiB: ${reason}`);
      results.skippedSizes.push({ sizeMebibytes: size, reason });
    }
    return chosen;
  };
  try {
    // The next size's time is foreseen from the last one's: the time spent moving bytes scales with the
    // size, the rest (process and etcd start-up) does not.
    // The Kubernetes sources run only at some sizes: scaled from their last figures, or else guessed as
    // one `etcdctl snapshot save` and one stream to S3 per run and source.
    let previous: { size: number; scaling: number; fixed: number; figures: SnapshotSizeFigures } | undefined;
    let kubeMeasured: { size: number; seconds: number } | undefined;
    const kubeEstimate = (size: number) => {
      const sources = kubeSourcesAt(size).length;
      if (sources === 0 || !previous) return 0;
      if (kubeMeasured) return (kubeMeasured.seconds * size) / kubeMeasured.size;
      const { etcdctlSave, productToS3 } = previous.figures.methods;
      const perRun = etcdctlSave.seconds.median + productToS3.seconds.median;
      return (sources * runs * perRun * size) / previous.size;
    };
    for (const size of sizes) {
      const estimate = previous
        ? previous.fixed + (previous.scaling * size) / previous.size + kubeEstimate(size)
        : 0;
      if (!fits(estimate)) {
        skip(size, estimate);
        continue;
      }
      const database = await open(size);
      const sizeStarted = Date.now();
      try {
        const figures = await benchSnapshotSize(context, database, {
          sizeMebibytes: size,
          partSettings,
          kubeSources: kubeSourcesAt(size),
        });
        results.snapshot.push(figures.snapshot);
        results.verify.push(figures.verify);
        const measuring = (Date.now() - sizeStarted) / 1000;
        const scaling = secondsMovingBytes(figures.snapshot, figures.verify);
        const throughKube = secondsThroughKube(figures.snapshot);
        if (throughKube > 0) kubeMeasured = { size, seconds: throughKube };
        previous = {
          size,
          scaling,
          fixed: Math.max(0, measuring - scaling - throughKube),
          figures: figures.snapshot,
        };
      } finally {
        await database.cluster.stop();
      }
    }

    // The memory pass: the product's own peak RSS at the largest size for each source, slow sink included.
    const largestFull = results.snapshot.at(-1);
    for (const size of memorySizes) {
      if (!largestFull) break;
      const scale = size / largestFull.sizeMebibytes;
      const { productToFile, productToS3 } = largestFull.methods;
      const estimate =
        15 +
        memoryRuns * scale * (productToFile.seconds.median + productToS3.seconds.median + 2) +
        slowSinkSeconds(size);
      if (!fits(estimate)) {
        skip(size, estimate);
        continue;
      }
      const kubeSlowSinks = kubeSlowSinkSources(size, estimate, memoryRuns, largestFull);
      const database = await open(size);
      try {
        results.memory.push(
          await benchMemory(context, database, size, memoryRuns, slowSinkMebibytesPerSecond * mebibyte, {
            kubeSlowSinkSources: kubeSlowSinks,
          }),
        );
      } finally {
        await database.cluster.stop();
      }
    }
    // Without a memory pass, the slow sink runs at the largest size measured.
    if (results.memory.length === 0 && largestFull) {
      const database = await open(largestFull.sizeMebibytes);
      try {
        largestFull.slowSink = await benchSlowSink(
          context,
          database,
          largestFull.sizeMebibytes,
          slowSinkMebibytesPerSecond * mebibyte,
          slowSinkRuns,
        );
        const size = largestFull.sizeMebibytes;
        const kubeSlowSinks = kubeSlowSinkSources(size, 0, slowSinkRuns, largestFull);
        if (kubeSlowSinks.length > 0) {
          Object.assign(
            largestFull,
            await benchKubeSlowSink(
              context,
              database,
              size,
              slowSinkMebibytesPerSecond * mebibyte,
              slowSinkRuns,
              kubeSlowSinks,
            ),
          );
        }
      } finally {
        await database.cluster.stop();
      }
    }
  } finally {
    await s3.stop();
  }
}

if (sections.has("restore")) {
  log(`restore: the agent's restore phase against curl, sha256sum and etcdctl by hand, ${restoreSize} MiB`);
  const s3 = await startS3EndpointProcess();
  try {
    results.restore = [await benchRestore({ runs, s3, log, env: childEnv }, restoreSize)];
  } finally {
    await s3.stop();
  }
}

if (sections.has("cold-start")) {
  log("cold start: bundling each handler and importing it in fresh processes");
  results.coldStart = await measureColdStarts(loads, log);
}

clearInterval(loadTimer);
results.machine.loadAverageAtEnd = loadavg()[0] as number;
results.machine.loadAverageMean =
  loadSamples.length > 0 ? loadSamples.reduce((sum, value) => sum + value, 0) / loadSamples.length : 0;
results.durationSeconds = (Date.now() - started) / 1000;

// A run of some sections keeps the other sections' figures from the last report, each with its origin.
const jsonPath = join(docsDir, "benchmarks.json");
if (allSections.some((section) => !sections.has(section)) && existsSync(jsonPath)) {
  const previous = JSON.parse(readFileSync(jsonPath, "utf8")) as BenchResults;
  const originOf = (section: string) =>
    previous.carriedOver?.find((entry) => entry.section === section) ?? {
      section,
      generatedAt: previous.generatedAt,
      commit: previous.source.commit,
      command: previous.command,
    };
  results.carriedOver = [];
  if (!sections.has("snapshot") && previous.snapshot.length > 0) {
    // Reports written by earlier versions of the bench may lack a list.
    results.componentRates = previous.componentRates;
    results.databases = previous.databases ?? [];
    results.snapshot = previous.snapshot;
    results.verify = previous.verify ?? [];
    results.memory = previous.memory ?? [];
    results.skippedSizes = previous.skippedSizes ?? [];
    results.carriedOver.push(originOf("snapshot"));
  }
  if (!sections.has("restore") && (previous.restore ?? []).length > 0) {
    results.restore = previous.restore ?? [];
    results.carriedOver.push(originOf("restore"));
  }
  if (!sections.has("cold-start") && previous.coldStart.length > 0) {
    results.coldStart = previous.coldStart;
    results.carriedOver.push(originOf("cold-start"));
  }
}

await mkdir(docsDir, { recursive: true });
await writeFile(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
await writeFile(join(docsDir, "benchmarks.md"), renderReport(results));
log(`wrote docs/benchmarks.md and docs/benchmarks.json in ${results.durationSeconds.toFixed(0)} s`);
