// Sections 1 and 2 of the bench for one database size: the snapshot methods, each run in turn so that a
// burst of other load on the machine hits all of them alike, then verification of the snapshot file.
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { defaultPartSize, defaultPartsInFlight } from "../lambdas/core/store/multipart-upload-sink.js";
import { type BenchDatabase, cacheDir } from "./etcd-databases.js";
import { type KubeApiEndpointProcess, startKubeApiProcess } from "./kube-api-endpoint-process.js";
import {
  measureProcess,
  type ProcessMeasurement,
  processCpuSeconds,
  processCpuTimes,
} from "./measure-process.js";
import type { WorkerResult, WorkerTask } from "./product-worker.js";
import type { S3EndpointProcess } from "./s3-endpoint-process.js";
import { type Summary, summarize } from "./statistics.js";

export const etcdctl = process.env.ETCDCTL_BINARY ?? "/usr/bin/etcdctl";
const projectRoot = join(import.meta.dirname, "..");
const workDir = join(cacheDir, "work");

/** Repeated measurements of one method: its duration and what its process used. */
export interface MethodFigures {
  seconds: Summary;
  /** Peak RSS of the method's own process (the product's, etcdctl's, sha256sum's). */
  peakRssBytes: Summary;
  /** CPU seconds of the method's own process (start-up included). */
  cpuSeconds: Summary | undefined;
  /** CPU seconds etcd spent serving the snapshot, when etcd is involved. */
  etcdCpuSeconds?: Summary;
  /** CPU seconds the s3rver process spent, when S3 is involved. */
  s3CpuSeconds?: Summary;
  /** CPU seconds the Kubernetes API stand-in's own process spent relaying, for the Kubernetes sources. */
  kubeApiCpuSeconds?: Summary;
  /** CPU seconds of the commands the stand-in ran "in the pod" (sh, etcdctl, cat), for the exec source. */
  podCpuSeconds?: Summary;
  /** Wall time of the whole process, Node's start-up and module loading included. */
  processSeconds?: Summary;
}

export interface SnapshotSizeFigures {
  sizeMebibytes: number;
  snapshotBytes: number;
  methods: {
    etcdctlSave: MethodFigures;
    productToFile: MethodFigures;
    productToS3: MethodFigures;
    plainUpload: MethodFigures;
    twoStep: MethodFigures;
  };
  slowSink?: SlowSinkFigures;
  partSettings?: Array<{ partSize: number; partsInFlight: number; figures: MethodFigures }>;
  /** The sources through the stand-in Kubernetes API server, at the sizes `BENCH_KUBE_SIZES` names. */
  kube?: { execToS3?: MethodFigures; portForwardToS3?: MethodFigures };
  /** The exec source into the slow sink (at the largest size, when no memory pass ran). */
  execSlowSink?: SlowSinkFigures;
  /** The port-forward source into the slow sink (likewise; absent from reports before it was measured). */
  portForwardSlowSink?: SlowSinkFigures;
}

/** A stream into a sink limited to `bytesPerSecond`. */
export type SlowSinkFigures = MethodFigures & { bytesPerSecond: number };

/** The ways through the Kubernetes API: etcdctl in the pod (exec), or gRPC through a port-forward. */
export const kubeSourceNames = ["exec", "port-forward"] as const;
export type KubeSourceName = (typeof kubeSourceNames)[number];

/** Peak RSS of the product's own process at a size measured for memory only. */
export interface MemoryPassFigures {
  sizeMebibytes: number;
  snapshotBytes: number;
  productToFile: MethodFigures;
  productToS3: MethodFigures;
  slowSink: SlowSinkFigures;
  /** The exec source through the stand-in API server into the same slow sink, when it fitted the budget. */
  execSlowSink?: SlowSinkFigures;
  /** The port-forward source likewise (absent from reports written before it was measured). */
  portForwardSlowSink?: SlowSinkFigures;
}

/** The sources through the stand-in API server into the slow sink, by the field their figures go in. */
export type KubeSlowSinkFigures = Pick<MemoryPassFigures, "execSlowSink" | "portForwardSlowSink">;

const kubeSlowSinks = {
  exec: { field: "execSlowSink", kind: "snapshot-exec-slow-sink" },
  "port-forward": { field: "portForwardSlowSink", kind: "snapshot-port-forward-slow-sink" },
} as const satisfies Record<KubeSourceName, { field: keyof KubeSlowSinkFigures; kind: WorkerTask["kind"] }>;

export interface VerifySizeFigures {
  sizeMebibytes: number;
  fileBytes: number;
  methods: {
    sha256sum: MethodFigures;
    productVerify: MethodFigures;
    etcdctlStatus: MethodFigures;
  };
  /** One run of `etcd-backup verify FILE` as a user runs it (tsx, start-up and TypeScript load included). */
  cliVerifySeconds: number;
  /** The product's revision and key count equal `etcdctl snapshot status -w json`'s. */
  agreesWithEtcdctl: boolean;
}

export interface BenchContext {
  runs: number;
  workerBundle: string;
  s3: S3EndpointProcess;
  log: (line: string) => void;
  env: NodeJS.ProcessEnv;
}

/** One run of a method: what its process and the processes it used spent. */
export interface Sample {
  seconds: number;
  peakRssBytes: number;
  cpuSeconds: number | undefined;
  etcdCpuSeconds?: number;
  s3CpuSeconds?: number;
  kubeApiCpuSeconds?: number;
  podCpuSeconds?: number;
  processSeconds?: number;
}

/** The median and range of each figure every sample has. */
export function figuresOf(samples: Sample[]): MethodFigures {
  const optional = (pick: (sample: Sample) => number | undefined) => {
    const values = samples.map(pick);
    return values.every((value) => value !== undefined) ? summarize(values as number[]) : undefined;
  };
  const figures: MethodFigures = {
    seconds: summarize(samples.map((sample) => sample.seconds)),
    peakRssBytes: summarize(samples.map((sample) => sample.peakRssBytes)),
    cpuSeconds: optional((sample) => sample.cpuSeconds),
  };
  const etcdCpu = optional((sample) => sample.etcdCpuSeconds);
  const s3Cpu = optional((sample) => sample.s3CpuSeconds);
  const kubeApiCpu = optional((sample) => sample.kubeApiCpuSeconds);
  const podCpu = optional((sample) => sample.podCpuSeconds);
  const processSeconds = optional((sample) => sample.processSeconds);
  if (etcdCpu) figures.etcdCpuSeconds = etcdCpu;
  if (s3Cpu) figures.s3CpuSeconds = s3Cpu;
  if (kubeApiCpu) figures.kubeApiCpuSeconds = kubeApiCpu;
  if (podCpu) figures.podCpuSeconds = podCpu;
  if (processSeconds) figures.processSeconds = processSeconds;
  return figures;
}

/** Runs `work`, adding the CPU seconds etcd, s3rver and the Kubernetes API stand-in spent meanwhile. */
async function withSidecarCpu<Measured extends Sample>(
  database: BenchDatabase,
  s3: S3EndpointProcess | undefined,
  work: () => Promise<Measured>,
  kubeApi?: KubeApiEndpointProcess,
): Promise<Measured> {
  const etcdPid = database.cluster.members[0]?.process?.pid as number;
  const etcdBefore = await processCpuSeconds(etcdPid);
  const s3Before = s3 ? await processCpuSeconds(s3.pid) : 0;
  const kubeBefore = kubeApi ? await processCpuTimes(kubeApi.pid) : undefined;
  const sample = await work();
  sample.etcdCpuSeconds = (await processCpuSeconds(etcdPid)) - etcdBefore;
  if (s3) sample.s3CpuSeconds = (await processCpuSeconds(s3.pid)) - s3Before;
  if (kubeApi && kubeBefore) {
    const kubeAfter = await processCpuTimes(kubeApi.pid);
    sample.kubeApiCpuSeconds = kubeAfter.own - kubeBefore.own;
    sample.podCpuSeconds = kubeAfter.waitedForChildren - kubeBefore.waitedForChildren;
  }
  return sample;
}

/** The stand-in Kubernetes API server, in its own process, serving one pod of `database`'s etcd. */
function startKubeApiFor(database: BenchDatabase): Promise<KubeApiEndpointProcess> {
  return startKubeApiProcess({
    clientUrl: database.endpoint,
    dataDir: database.cluster.members[0]?.dataDir as string,
    etcdctl,
  });
}

async function runWorker(
  context: BenchContext,
  task: WorkerTask,
): Promise<Sample & { result: WorkerResult }> {
  const measured = await measureProcess(process.execPath, [context.workerBundle, JSON.stringify(task)], {
    env: context.env,
  });
  const result = JSON.parse(measured.stdout.trim().split("\n").at(-1) ?? "null") as WorkerResult;
  return {
    seconds: result.durationMs / 1000,
    peakRssBytes: measured.peakRssBytes,
    cpuSeconds: measured.cpuSeconds,
    processSeconds: measured.wallMs / 1000,
    result,
  };
}

/** A measured process as a sample: its wall time, peak RSS and CPU time. */
export function sampleOf(measured: ProcessMeasurement): Sample {
  return {
    seconds: measured.wallMs / 1000,
    peakRssBytes: measured.peakRssBytes,
    cpuSeconds: measured.cpuSeconds,
  };
}

async function runTool(context: BenchContext, command: string, args: string[]) {
  const measured = await measureProcess(command, args, { env: context.env });
  return { sample: sampleOf(measured), stdout: measured.stdout };
}

function etcdctlSave(context: BenchContext, database: BenchDatabase, path: string) {
  return runTool(context, etcdctl, [`--endpoints=${database.endpoint}`, "snapshot", "save", path]);
}

export interface SnapshotBenchOptions {
  sizeMebibytes: number;
  /** Extra part size × parts in flight settings to run the S3 path with, to tune the defaults. */
  partSettings?: Array<{ partSize: number; partsInFlight: number }>;
  /** The sources through the stand-in Kubernetes API server to run at this size, into S3. */
  kubeSources?: readonly KubeSourceName[];
}

export async function benchSnapshotSize(
  context: BenchContext,
  database: BenchDatabase,
  options: SnapshotBenchOptions,
): Promise<{ snapshot: SnapshotSizeFigures; verify: VerifySizeFigures }> {
  const { runs, s3, log } = context;
  const size = options.sizeMebibytes;
  await mkdir(workDir, { recursive: true });
  const etcdctlFile = join(workDir, `etcdctl-${size}mib.db`);
  const productFile = join(workDir, `product-${size}mib.db`);
  const samples = {
    etcdctlSave: [] as Sample[],
    productToFile: [] as Sample[],
    productToS3: [] as Sample[],
    plainUpload: [] as Sample[],
    twoStep: [] as Sample[],
    execToS3: [] as Sample[],
    portForwardToS3: [] as Sample[],
  };
  const kubeSources = options.kubeSources ?? [];
  const kubeApi = kubeSources.length > 0 ? await startKubeApiFor(database) : undefined;
  let snapshotBytes = 0;
  const upload = (path: string): WorkerTask => ({
    kind: "upload-file",
    path,
    s3Endpoint: s3.endpoint,
    bucket: s3.bucket,
    partSize: defaultPartSize,
    partsInFlight: defaultPartsInFlight,
  });
  try {
    for (let run = 1; run <= runs; run++) {
      const a = await withSidecarCpu(database, undefined, async (): Promise<Sample> => {
        await rm(etcdctlFile, { force: true });
        return (await etcdctlSave(context, database, etcdctlFile)).sample;
      });
      samples.etcdctlSave.push(a);
      const b = await withSidecarCpu(database, undefined, () =>
        runWorker(context, { kind: "snapshot-file", etcdEndpoint: database.endpoint, path: productFile }),
      );
      samples.productToFile.push(b);
      snapshotBytes = b.result.bytes;
      const c = await withSidecarCpu(database, s3, () =>
        runWorker(context, {
          kind: "snapshot-s3",
          etcdEndpoint: database.endpoint,
          s3Endpoint: s3.endpoint,
          bucket: s3.bucket,
        }),
      );
      samples.productToS3.push(c);
      const d = await withSidecarCpu(database, s3, () => runWorker(context, upload(etcdctlFile)));
      samples.plainUpload.push(d);
      // The seed's two-step method is exactly (a) then (d): d uploads the very file a saved.
      const e: Sample = {
        seconds: a.seconds + d.seconds,
        peakRssBytes: d.peakRssBytes,
        cpuSeconds:
          a.cpuSeconds === undefined || d.cpuSeconds === undefined ? undefined : a.cpuSeconds + d.cpuSeconds,
        etcdCpuSeconds: (a.etcdCpuSeconds ?? 0) + (d.etcdCpuSeconds ?? 0),
        s3CpuSeconds: d.s3CpuSeconds ?? 0,
        processSeconds: a.seconds + (d.processSeconds ?? d.seconds),
      };
      samples.twoStep.push(e);
      let kubeLog = "";
      if (kubeApi) {
        for (const name of kubeSources) {
          const sample = await withSidecarCpu(
            database,
            s3,
            () =>
              runWorker(context, {
                kind: name === "exec" ? "snapshot-exec-s3" : "snapshot-port-forward-s3",
                kube: { kubeconfig: kubeApi.kubeconfig, pod: kubeApi.pod },
                s3Endpoint: s3.endpoint,
                bucket: s3.bucket,
              }),
            kubeApi,
          );
          (name === "exec" ? samples.execToS3 : samples.portForwardToS3).push(sample);
          kubeLog += `; ${name} → S3 ${sample.seconds.toFixed(2)} s, RSS ${mib(sample.peakRssBytes)} MiB`;
        }
      }
      log(
        `  ${size} MiB run ${run}: etcdctl ${a.seconds.toFixed(2)} s, file ${b.seconds.toFixed(2)} s, ` +
          `S3 ${c.seconds.toFixed(2)} s, plain upload ${d.seconds.toFixed(2)} s, two-step ${e.seconds.toFixed(2)} s; ` +
          `RSS file ${mib(b.peakRssBytes)}, S3 ${mib(c.peakRssBytes)} MiB${kubeLog}`,
      );
    }

    const snapshot: SnapshotSizeFigures = {
      sizeMebibytes: size,
      snapshotBytes,
      methods: {
        etcdctlSave: figuresOf(samples.etcdctlSave),
        productToFile: figuresOf(samples.productToFile),
        productToS3: figuresOf(samples.productToS3),
        plainUpload: figuresOf(samples.plainUpload),
        twoStep: figuresOf(samples.twoStep),
      },
    };
    if (kubeSources.length > 0) {
      snapshot.kube = {};
      if (samples.execToS3.length > 0) snapshot.kube.execToS3 = figuresOf(samples.execToS3);
      if (samples.portForwardToS3.length > 0) {
        snapshot.kube.portForwardToS3 = figuresOf(samples.portForwardToS3);
      }
    }

    if (options.partSettings && options.partSettings.length > 0) {
      snapshot.partSettings = [];
      for (const setting of options.partSettings) {
        const tuned: Sample[] = [];
        for (let run = 1; run <= runs; run++) {
          tuned.push(
            await withSidecarCpu(database, s3, () =>
              runWorker(context, {
                kind: "snapshot-s3",
                etcdEndpoint: database.endpoint,
                s3Endpoint: s3.endpoint,
                bucket: s3.bucket,
                ...setting,
              }),
            ),
          );
        }
        const figures = figuresOf(tuned);
        log(
          `  ${size} MiB S3 with ${mib(setting.partSize)} MiB × ${setting.partsInFlight}: ` +
            `${figures.seconds.median.toFixed(2)} s, RSS ${mib(figures.peakRssBytes.max)} MiB`,
        );
        snapshot.partSettings.push({ ...setting, figures });
      }
    }

    const verify = await benchVerify(context, size, productFile);
    return { snapshot, verify };
  } finally {
    await kubeApi?.stop();
    await Promise.all([etcdctlFile, productFile].map((path) => rm(path, { force: true })));
  }
}

/** The memory pass: each source once per run, then the slow sink; the figure that matters is peak RSS. */
export async function benchMemory(
  context: BenchContext,
  database: BenchDatabase,
  size: number,
  runs: number,
  slowSinkBytesPerSecond: number,
  options: { kubeSlowSinkSources?: readonly KubeSourceName[] } = {},
): Promise<MemoryPassFigures> {
  await mkdir(workDir, { recursive: true });
  const productFile = join(workDir, `product-${size}mib.db`);
  const toFile: Sample[] = [];
  const toS3: Sample[] = [];
  let snapshotBytes = 0;
  try {
    for (let run = 1; run <= runs; run++) {
      const b = await withSidecarCpu(database, undefined, () =>
        runWorker(context, { kind: "snapshot-file", etcdEndpoint: database.endpoint, path: productFile }),
      );
      snapshotBytes = b.result.bytes;
      await rm(productFile, { force: true });
      const c = await withSidecarCpu(database, context.s3, () =>
        runWorker(context, {
          kind: "snapshot-s3",
          etcdEndpoint: database.endpoint,
          s3Endpoint: context.s3.endpoint,
          bucket: context.s3.bucket,
        }),
      );
      toFile.push(b);
      toS3.push(c);
      context.log(
        `  ${size} MiB memory run ${run}: file ${b.seconds.toFixed(2)} s, RSS ${mib(b.peakRssBytes)} MiB; ` +
          `S3 ${c.seconds.toFixed(2)} s, RSS ${mib(c.peakRssBytes)} MiB`,
      );
    }
  } finally {
    await rm(productFile, { force: true });
  }
  const figures: MemoryPassFigures = {
    sizeMebibytes: size,
    snapshotBytes,
    productToFile: figuresOf(toFile),
    productToS3: figuresOf(toS3),
    slowSink: await benchSlowSink(context, database, size, slowSinkBytesPerSecond, runs),
  };
  const kubeSources = options.kubeSlowSinkSources ?? [];
  if (kubeSources.length > 0) {
    Object.assign(
      figures,
      await benchKubeSlowSink(context, database, size, slowSinkBytesPerSecond, runs, kubeSources),
    );
  }
  return figures;
}

/** Streams the snapshot into a sink limited to `bytesPerSecond`: memory must stay flat, held by backpressure. */
export async function benchSlowSink(
  context: BenchContext,
  database: BenchDatabase,
  size: number,
  bytesPerSecond: number,
  runs: number,
): Promise<SlowSinkFigures> {
  const slow: Sample[] = [];
  for (let run = 1; run <= runs; run++) {
    const sample = await withSidecarCpu(database, undefined, () =>
      runWorker(context, { kind: "snapshot-slow-sink", etcdEndpoint: database.endpoint, bytesPerSecond }),
    );
    context.log(
      `  ${size} MiB slow sink run ${run}: ${sample.seconds.toFixed(1)} s, RSS ${mib(sample.peakRssBytes)} MiB`,
    );
    slow.push(sample);
  }
  return { ...figuresOf(slow), bytesPerSecond };
}

/**
 * The sources through the stand-in API server into the slow sink, in turn within each run. Exec: etcdctl
 * saves at full speed in the pod, then the pod's `cat` must be held back through the WebSocket, the API
 * server and the product. Port-forward: etcd's gRPC stream must be held back through the product's local
 * tunnel, the port-forward WebSocket and the API server from the start.
 */
export async function benchKubeSlowSink(
  context: BenchContext,
  database: BenchDatabase,
  size: number,
  bytesPerSecond: number,
  runs: number,
  sources: readonly KubeSourceName[],
): Promise<KubeSlowSinkFigures> {
  const kubeApi = await startKubeApiFor(database);
  const samples = new Map<KubeSourceName, Sample[]>(sources.map((source) => [source, []]));
  try {
    for (let run = 1; run <= runs; run++) {
      for (const source of sources) {
        const sample = await withSidecarCpu(
          database,
          undefined,
          () =>
            runWorker(context, {
              kind: kubeSlowSinks[source].kind,
              kube: { kubeconfig: kubeApi.kubeconfig, pod: kubeApi.pod },
              bytesPerSecond,
            }),
          kubeApi,
        );
        context.log(
          `  ${size} MiB ${source} → slow sink run ${run}: ${sample.seconds.toFixed(1)} s, RSS ${mib(sample.peakRssBytes)} MiB`,
        );
        samples.get(source)?.push(sample);
      }
    }
  } finally {
    await kubeApi.stop();
  }
  const figures: KubeSlowSinkFigures = {};
  for (const [source, measured] of samples) {
    figures[kubeSlowSinks[source].field] = { ...figuresOf(measured), bytesPerSecond };
  }
  return figures;
}

async function benchVerify(context: BenchContext, size: number, file: string): Promise<VerifySizeFigures> {
  const samples = { sha256sum: [] as Sample[], productVerify: [] as Sample[], etcdctlStatus: [] as Sample[] };
  let agrees = true;
  let fileBytes = 0;
  for (let run = 1; run <= context.runs; run++) {
    samples.sha256sum.push((await runTool(context, "sha256sum", [file])).sample);
    const verified = await runWorker(context, { kind: "verify", path: file });
    samples.productVerify.push(verified);
    fileBytes = verified.result.bytes;
    const status = await runTool(context, etcdctl, ["snapshot", "status", file, "-w", "json"]);
    samples.etcdctlStatus.push(status.sample);
    const expected = JSON.parse(status.stdout) as { revision: number; totalKey: number };
    const details = verified.result.details as { revision: number; totalKey: number };
    agrees &&= expected.revision === details.revision && expected.totalKey === details.totalKey;
  }
  const cli = await measureProcess(
    process.execPath,
    [join(projectRoot, "bin", "etcd-backup.mjs"), "verify", file, "--json"],
    { env: context.env, cwd: projectRoot },
  );
  const figures: VerifySizeFigures = {
    sizeMebibytes: size,
    fileBytes,
    methods: {
      sha256sum: figuresOf(samples.sha256sum),
      productVerify: figuresOf(samples.productVerify),
      etcdctlStatus: figuresOf(samples.etcdctlStatus),
    },
    cliVerifySeconds: cli.wallMs / 1000,
    agreesWithEtcdctl: agrees,
  };
  context.log(
    `  ${size} MiB verify: sha256sum ${figures.methods.sha256sum.seconds.median.toFixed(2)} s, ` +
      `product ${figures.methods.productVerify.seconds.median.toFixed(2)} s, ` +
      `etcdctl status ${figures.methods.etcdctlStatus.seconds.median.toFixed(2)} s, CLI ${figures.cliVerifySeconds.toFixed(2)} s`,
  );
  return figures;
}

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(0);
}
