// Section 3 of the bench: the restore agent's own restore phase (the real script, reading its plan and
// writing its status through presigned URLs, as on a node) against doing the same by hand in sequence:
// `curl -o FILE URL`, `sha256sum FILE`, `etcdctl snapshot restore FILE`. Both read the same snapshot from
// s3rver in another process through one presigned GET URL.
import { execFileSync, spawn } from "node:child_process";
import { createReadStream, existsSync } from "node:fs";
import { mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { type RestorePlan, renderPlan } from "../lambdas/core/restore/restore-plan.js";
import { createS3Client } from "../lambdas/core/store/aws-clients.js";
import { presignWithClient } from "../lambdas/core/store/presign.js";
import { findFreePort } from "../test/support/free-port.js";
import { restoreAgentScript } from "../test/support/restore-agents.js";
import { cacheDir, openBenchDatabase } from "./etcd-databases.js";
import { measureProcess, processCpuSeconds, readGnuTime, underGnuTime } from "./measure-process.js";
import type { S3EndpointProcess } from "./s3-endpoint-process.js";
import { etcdctl, figuresOf, type MethodFigures, type Sample, sampleOf } from "./snapshot-bench.js";
import { type Summary, summarize } from "./statistics.js";

const mebibyte = 1024 * 1024;
const restoreDir = join(cacheDir, "restore");
/** Far above a healthy run; only a hung agent reaches it. */
const agentTimeoutMs = 10 * 60_000;

export interface RestoreFigures {
  sizeMebibytes: number;
  snapshotBytes: number;
  /** The agent's restore phase, from its process start until it logs the phase done. */
  agent: MethodFigures & {
    /** From its "downloading" log line until it runs the restore tool: the download and its size check. */
    downloadSeconds: Summary;
    /** From there until "snapshot verified": the restore tool, with the sha256 of the download beside it. */
    restoreAndHashSeconds: Summary;
    /** From there until the phase is done: the download deleted, the new data dir swapped in, sync. */
    swapSeconds: Summary;
  };
  /** curl, then sha256sum, then etcdctl snapshot restore: each step's own figures, and their sum. */
  byHand: {
    total: MethodFigures;
    download: MethodFigures;
    sha256sum: MethodFigures;
    restore: MethodFigures;
  };
}

export interface RestoreBenchContext {
  runs: number;
  s3: S3EndpointProcess;
  log: (line: string) => void;
  env: NodeJS.ProcessEnv;
}

interface SnapshotFile {
  path: string;
  bytes: number;
  /** The trailer: sha256 of the database part, as the catalogue records it. */
  sha256: string;
  revision: number;
}

/** An `etcdctl snapshot save` of the bench database of `mebibytes`, saved once under bench/.cache/restore/. */
async function benchSnapshotFile(mebibytes: number, log: (line: string) => void): Promise<SnapshotFile> {
  const path = join(restoreDir, `snapshot-${mebibytes}mib.db`);
  // No .json extension: Biome lints every JSON file in the tree.
  const markerPath = `${path}.marker`;
  if (existsSync(path) && existsSync(markerPath)) {
    return { path, ...(JSON.parse(await readFile(markerPath, "utf8")) as Omit<SnapshotFile, "path">) };
  }
  log(`restore: saving a snapshot of the ${mebibytes} MiB database once, into bench/.cache/restore/`);
  await mkdir(restoreDir, { recursive: true });
  const database = await openBenchDatabase(mebibytes);
  try {
    const status = await fetch(`${database.endpoint}/v3/maintenance/status`, { method: "POST", body: "{}" });
    const revision = Number(((await status.json()) as { header: { revision: string } }).header.revision);
    await rm(`${path}.part`, { force: true });
    execFileSync(etcdctl, [`--endpoints=${database.endpoint}`, "snapshot", "save", `${path}.part`], {
      env: { ...process.env, ETCDCTL_API: "3" },
      stdio: "ignore",
    });
    const handle = await open(`${path}.part`, "r");
    let snapshot: Omit<SnapshotFile, "path">;
    try {
      const { size } = await handle.stat();
      const trailer = Buffer.alloc(32);
      await handle.read(trailer, 0, 32, size - 32);
      snapshot = { bytes: size, sha256: trailer.toString("hex"), revision };
    } finally {
      await handle.close();
    }
    await writeFile(markerPath, `${JSON.stringify(snapshot)}\n`);
    await rename(`${path}.part`, path);
    return { path, ...snapshot };
  } finally {
    await database.cluster.stop();
  }
}

/** Flushes dirty pages before a timed method, so that none pays for the writes of the one before. */
function syncDisks() {
  execFileSync("sync");
}

async function withS3Cpu<Measured extends Sample>(
  s3: S3EndpointProcess,
  work: () => Promise<Measured>,
): Promise<Measured> {
  const before = await processCpuSeconds(s3.pid);
  const sample = await work();
  sample.s3CpuSeconds = (await processCpuSeconds(s3.pid)) - before;
  return sample;
}

interface AgentRun extends Sample {
  downloadSeconds: number;
  restoreAndHashSeconds: number;
  swapSeconds: number;
}

/** Runs the agent script on a plan at phase restore; returns once it has exited after the finish phase. */
async function runAgent(
  context: RestoreBenchContext,
  plan: RestorePlan,
  writePlan: (plan: RestorePlan) => Promise<void>,
  urls: { plan: string; status: string },
): Promise<AgentRun> {
  await writePlan(plan);
  const timeFile = join(restoreDir, "agent.time");
  const [file, argv] = underGnuTime("bash", [restoreAgentScript, urls.plan, urls.status], timeFile);
  const started = performance.now();
  const child = spawn(file, argv, {
    env: {
      ...context.env,
      ETCD_RESTORE_AGENT_POLL_SECONDS: "0.1",
      ETCD_RESTORE_AGENT_PLAN_WAIT_SECONDS: "30",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", resolve);
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), agentTimeoutMs);
  // The log's own timestamps are whole seconds: each line is timed as it arrives.
  const seen = new Map<string, number>();
  const logLines: string[] = [];
  const marks = {
    downloading: "downloading the snapshot (",
    restoring: "snapshot restore into",
    verified: "snapshot verified:",
    done: "phase restore done:",
  };
  let finishing: Promise<void> | undefined;
  let failure: string | undefined;
  for await (const line of createInterface({ input: child.stderr as NonNullable<typeof child.stderr> })) {
    logLines.push(line);
    for (const [name, text] of Object.entries(marks)) {
      if (!seen.has(name) && line.includes(text)) seen.set(name, performance.now());
    }
    if (line.includes("FAILED:")) failure = line;
    // Done: the plan moves on to finish, on which the agent exits.
    if (seen.has("done") && !finishing) finishing = writePlan({ ...plan, phase: "finish" });
  }
  const code = await exited;
  clearTimeout(timer);
  await finishing;
  const downloading = seen.get("downloading");
  const restoring = seen.get("restoring");
  const verified = seen.get("verified");
  const done = seen.get("done");
  if (failure || code !== 0 || !downloading || !restoring || !verified || !done) {
    throw new Error(
      `the restore agent ${failure ? "failed" : `exited with ${code}`}:\n${logLines.slice(-15).join("\n")}`,
    );
  }
  const timed = await readGnuTime(timeFile);
  return {
    seconds: (done - started) / 1000,
    downloadSeconds: (restoring - downloading) / 1000,
    restoreAndHashSeconds: (verified - restoring) / 1000,
    swapSeconds: (done - verified) / 1000,
    peakRssBytes: timed?.peakRssBytes ?? 0,
    cpuSeconds: timed?.cpuSeconds,
  };
}

export async function benchRestore(context: RestoreBenchContext, mebibytes: number): Promise<RestoreFigures> {
  const { s3, log, runs } = context;
  const snapshot = await benchSnapshotFile(mebibytes, log);
  const client = createS3Client({ endpoint: s3.endpoint });
  const presign = (key: string, method: "GET" | "PUT") =>
    presignWithClient(client, {
      bucket: s3.bucket,
      key,
      method,
      expiresInSeconds: 3600,
      endpoint: s3.endpoint,
    });
  const snapshotKey = `bench-restore/snapshot-${mebibytes}mib.db`;
  log(`restore: uploading the ${(snapshot.bytes / mebibyte).toFixed(0)} MiB snapshot to s3rver`);
  // One PutObject: s3rver takes it in half the time of a multipart upload, which it must then concatenate.
  await client.send(
    new PutObjectCommand({
      Bucket: s3.bucket,
      Key: snapshotKey,
      Body: createReadStream(snapshot.path),
      ContentLength: snapshot.bytes,
    }),
  );
  const snapshotUrl = await presign(snapshotKey, "GET");
  const planKey = "bench-restore/agent/plan";
  const urls = {
    plan: await presign(planKey, "GET"),
    status: await presign("bench-restore/agent/status.json", "PUT"),
  };
  const writePlan = async (plan: RestorePlan) => {
    await client.send(
      new PutObjectCommand({
        Bucket: s3.bucket,
        Key: planKey,
        Body: renderPlan(plan),
        ContentType: "text/plain",
      }),
    );
  };

  const runDir = join(restoreDir, "run");
  const memberName = "bench";
  const peerUrl = "http://127.0.0.1:2380";
  const initialCluster = `${memberName}=${peerUrl}`;
  const initialClusterToken = "bench-restore";
  // Nothing listens there: the agent's check that etcd is stopped passes at once.
  const clientUrl = `http://127.0.0.1:${await findFreePort()}`;
  const fresh = async () => {
    await rm(runDir, { recursive: true, force: true });
    await mkdir(join(runDir, "manifests"), { recursive: true });
    await mkdir(join(runDir, "parked"), { recursive: true });
  };

  const agentSamples: AgentRun[] = [];
  const hand = {
    total: [] as Sample[],
    download: [] as Sample[],
    sha256sum: [] as Sample[],
    restore: [] as Sample[],
  };
  const runAgentOnce = async (run: number) => {
    await fresh();
    syncDisks();
    const plan: RestorePlan = {
      restoreId: `bench-${run}`,
      cluster: "bench",
      phase: "restore",
      snapshot: {
        url: snapshotUrl,
        sha256: snapshot.sha256,
        bytes: snapshot.bytes,
        revision: snapshot.revision,
      },
      member: {
        name: memberName,
        dataDir: join(runDir, "etcd"),
        manifestDir: join(runDir, "manifests"),
        parkedManifestDir: join(runDir, "parked"),
        etcdManifest: "etcd.yaml",
        clientUrl,
        peerUrl,
      },
      initialCluster,
      initialClusterToken,
      restoreTool: "etcdctl",
      etcdctlPath: etcdctl,
      minimumFreeBytes: snapshot.bytes * 3,
    };
    const sample = await withS3Cpu(s3, () => runAgent(context, plan, writePlan, urls));
    agentSamples.push(sample);
    return sample;
  };
  const runByHandOnce = async () => {
    await fresh();
    syncDisks();
    const file = join(runDir, "snapshot.db");
    const steps = {
      download: await withS3Cpu(s3, async () =>
        sampleOf(
          await measureProcess("curl", ["--silent", "--show-error", "--fail", "-o", file, snapshotUrl]),
        ),
      ),
      sha256sum: sampleOf(await measureProcess("sha256sum", [file], { env: context.env })),
      restore: sampleOf(
        await measureProcess(
          etcdctl,
          [
            "snapshot",
            "restore",
            file,
            `--name=${memberName}`,
            `--initial-cluster=${initialCluster}`,
            `--initial-cluster-token=${initialClusterToken}`,
            `--initial-advertise-peer-urls=${peerUrl}`,
            `--data-dir=${join(runDir, "etcd")}`,
          ],
          { env: { ...context.env, ETCDCTL_API: "3" } },
        ),
      ),
    };
    const sum = (pick: (sample: Sample) => number | undefined) => {
      const values = Object.values(steps).map(pick);
      return values.every((value) => value !== undefined)
        ? values.reduce((total: number, value) => total + (value as number), 0)
        : undefined;
    };
    const total: Sample = {
      seconds: sum((sample) => sample.seconds) as number,
      peakRssBytes: Math.max(...Object.values(steps).map((sample) => sample.peakRssBytes)),
      cpuSeconds: sum((sample) => sample.cpuSeconds),
      s3CpuSeconds: steps.download.s3CpuSeconds ?? 0,
    };
    hand.total.push(total);
    hand.download.push(steps.download);
    hand.sha256sum.push(steps.sha256sum);
    hand.restore.push(steps.restore);
    return { total, steps };
  };

  try {
    for (let run = 1; run <= runs; run++) {
      // Which goes first alternates, so that neither always meets the machine as the other left it.
      let agent: AgentRun;
      let byHand: Awaited<ReturnType<typeof runByHandOnce>>;
      if (run % 2 === 1) {
        agent = await runAgentOnce(run);
        byHand = await runByHandOnce();
      } else {
        byHand = await runByHandOnce();
        agent = await runAgentOnce(run);
      }
      log(
        `  restore ${mebibytes} MiB run ${run}: agent ${agent.seconds.toFixed(2)} s ` +
          `(download ${agent.downloadSeconds.toFixed(2)} s, restore with the hash beside it ${agent.restoreAndHashSeconds.toFixed(2)} s, ` +
          `swap ${agent.swapSeconds.toFixed(2)} s); ` +
          `by hand ${byHand.total.seconds.toFixed(2)} s (curl ${byHand.steps.download.seconds.toFixed(2)} s, ` +
          `sha256sum ${byHand.steps.sha256sum.seconds.toFixed(2)} s, etcdctl restore ${byHand.steps.restore.seconds.toFixed(2)} s)`,
      );
    }
  } finally {
    await rm(runDir, { recursive: true, force: true });
  }

  return {
    sizeMebibytes: mebibytes,
    snapshotBytes: snapshot.bytes,
    agent: {
      ...figuresOf(agentSamples),
      downloadSeconds: summarize(agentSamples.map((sample) => sample.downloadSeconds)),
      restoreAndHashSeconds: summarize(agentSamples.map((sample) => sample.restoreAndHashSeconds)),
      swapSeconds: summarize(agentSamples.map((sample) => sample.swapSeconds)),
    },
    byHand: {
      total: figuresOf(hand.total),
      download: figuresOf(hand.download),
      sha256sum: figuresOf(hand.sha256sum),
      restore: figuresOf(hand.restore),
    },
  };
}
