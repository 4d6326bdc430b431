// Cold start of each Lambda handler: bundle it as deployed (bench/bundle.ts), then time `import()` of the
// bundle in a fresh `node` process. For the largest handler only (to keep the bench short), the same
// import without source-map support, and a build that leaves the AWS SDK to the runtime (Node 22 Lambda
// ships SDK v3 with its @smithy packages).
import { execFile } from "node:child_process";
import { readdir, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { bundleLikeLambda, prepareBuildDir } from "./bundle.js";
import { type Summary, summarize } from "./statistics.js";

const run = promisify(execFile);
const projectRoot = join(import.meta.dirname, "..");
const handlersDir = join(projectRoot, "lambdas", "handlers");

export interface HandlerColdStart {
  handler: string;
  /** The bundle as deployed: the AWS SDK inside. */
  bundleBytes: number;
  sourceMapBytes: number;
  /** The bundle with `@aws-sdk/*` and `@smithy/*` left to the runtime. */
  sdkExternalBundleBytes: number;
  /**
   * `await import(bundle)` in a fresh process, as deployed: stack traces mapped lazily
   * (lambdas/handlers/shared/lazy-source-maps.ts, on with AWS_LAMBDA_FUNCTION_NAME set), no Node flag.
   */
  loadMs: Summary;
  /** From the process's time origin to the handler being loaded (Node's own start-up included). */
  processToLoadedMs: Summary;
  /** Measured for the largest handler only: with Node's `--enable-source-maps`, which parses the map at load. */
  loadWithNodeSourceMapsMs?: Summary;
  /** Measured for the largest handler only: the SDK loaded from node_modules, as the runtime would. */
  sdkExternalLoadMs?: Summary;
}

const loaderScript = [
  "const started = performance.now();",
  "const module = await import(process.argv[1]);",
  "const loaded = performance.now();",
  "if (typeof module.handler !== 'function') throw new Error('no handler export');",
  "process.stdout.write(JSON.stringify({ loadMs: loaded - started, processToLoadedMs: loaded }));",
].join("\n");

/** What the handlers find in their environment on AWS; none of it is used at import time. */
const handlerEnvironment = {
  AWS_REGION: "us-east-1",
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  CATALOGUE_TABLE: "bench-catalogue",
  SNAPSHOT_BUCKET: "bench-bucket",
  TARGETS_PARAMETER_NAME: "/bench/targets",
  POWERTOOLS_SERVICE_NAME: "etcd-backup",
  POWERTOOLS_METRICS_NAMESPACE: "EtcdBackup",
  AWS_LAMBDA_FUNCTION_NAME: "bench",
  PATH: process.env.PATH ?? "",
};

export async function listHandlers(): Promise<string[]> {
  return (await readdir(handlersDir))
    .filter((name) => name.endsWith(".ts"))
    .map((name) => basename(name, ".ts"))
    .sort();
}

/** Bundles every handler; returns the directory holding `<handler>.mjs` and its map. */
async function bundleHandlers(handlers: string[], externalSdk: boolean): Promise<string> {
  const outdir = join(await prepareBuildDir(), "handlers", externalSdk ? "sdk-external" : "sdk-bundled");
  await rm(outdir, { recursive: true, force: true });
  await bundleLikeLambda(
    handlers.map((handler) => join(handlersDir, `${handler}.ts`)),
    outdir,
    { externalSdk },
  );
  return outdir;
}

async function timeLoad(bundle: string, nodeSourceMaps: boolean) {
  const { stdout } = await run(
    process.execPath,
    ["--input-type=module", "-e", loaderScript, pathToFileURL(bundle).href],
    { env: { ...handlerEnvironment, ...(nodeSourceMaps ? { NODE_OPTIONS: "--enable-source-maps" } : {}) } },
  );
  return JSON.parse(stdout) as { loadMs: number; processToLoadedMs: number };
}

export async function measureColdStarts(
  loads: number,
  log: (line: string) => void,
): Promise<HandlerColdStart[]> {
  const results: HandlerColdStart[] = [];
  const handlers = await listHandlers();
  const bundledDir = await bundleHandlers(handlers, false);
  const externalDir = await bundleHandlers(handlers, true);
  // Round-robin over the handlers, so that a stretch of load from elsewhere on the machine slows one sample
  // of many handlers rather than every sample of one.
  const samples = new Map(
    handlers.map((handler) => [handler, [] as Array<Awaited<ReturnType<typeof timeLoad>>>]),
  );
  for (let index = 0; index < loads; index++) {
    for (const handler of handlers) {
      samples.get(handler)?.push(await timeLoad(join(bundledDir, `${handler}.mjs`), false));
    }
  }
  for (const handler of handlers) {
    const bundle = join(bundledDir, `${handler}.mjs`);
    const external = join(externalDir, `${handler}.mjs`);
    const own = samples.get(handler) ?? [];
    const result: HandlerColdStart = {
      handler,
      bundleBytes: (await stat(bundle)).size,
      sourceMapBytes: (await stat(`${bundle}.map`)).size,
      sdkExternalBundleBytes: (await stat(external)).size,
      loadMs: summarize(own.map((sample) => sample.loadMs)),
      processToLoadedMs: summarize(own.map((sample) => sample.processToLoadedMs)),
    };
    log(
      `  ${handler}: ${(result.bundleBytes / 1e6).toFixed(2)} MB, load ${result.loadMs.median.toFixed(0)} ms`,
    );
    results.push(result);
  }

  const largest = results.reduce((a, b) => (b.bundleBytes > a.bundleBytes ? b : a));
  const bundle = join(bundledDir, `${largest.handler}.mjs`);
  const external = join(externalDir, `${largest.handler}.mjs`);
  const withNodeMaps: number[] = [];
  const externalSdk: number[] = [];
  for (let index = 0; index < loads; index++) {
    withNodeMaps.push((await timeLoad(bundle, true)).loadMs);
    externalSdk.push((await timeLoad(external, false)).loadMs);
  }
  largest.loadWithNodeSourceMapsMs = summarize(withNodeMaps);
  largest.sdkExternalLoadMs = summarize(externalSdk);
  log(
    `  ${largest.handler}: with --enable-source-maps ${largest.loadWithNodeSourceMapsMs.median.toFixed(0)} ms, ` +
      `SDK from node_modules ${largest.sdkExternalLoadMs.median.toFixed(0)} ms`,
  );
  return results;
}
