// The bench's etcd databases: built once per size with batched 1 MiB puts, kept under bench/.cache/
// (gitignored) and reused by later runs through startEtcdCluster({ baseDir }).
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type EtcdCluster, startEtcdCluster } from "../test/support/etcd-cluster.js";
import { createEtcdWriter } from "../test/support/etcd-writer.js";

export const cacheDir = join(import.meta.dirname, ".cache");
const mebibyte = 1024 * 1024;
/** Comfortably above the largest database, so that no size hits etcd's 2 GiB default quota. */
const quotaBackendBytes = 8 * 1024 * mebibyte;
/** A value a little under 1 MiB, so that a put with its key stays within a 1 MiB transaction. */
const valueBytes = mebibyte - 256;
const putsBetweenSizeChecks = 32;
const concurrentWriters = 4;

export interface BenchDatabase {
  cluster: EtcdCluster;
  endpoint: string;
  /** The database size etcd reports (`dbSize`), which the snapshot's database part equals. */
  databaseBytes: number;
  /** Whether this run had to build it (a cached one is reused). */
  built: boolean;
  buildMs: number;
}

interface ReadyMarker {
  targetMebibytes: number;
  values: number;
  databaseBytes: number;
}

/** Starts etcd on the cached database of about `mebibytes`, building it first when it is missing. */
export async function openBenchDatabase(mebibytes: number): Promise<BenchDatabase> {
  const baseDir = join(cacheDir, `etcd-${mebibytes}mib`);
  // No .json extension: Biome lints every JSON file in the tree, and this one is the bench's, not the code's.
  const markerPath = join(baseDir, "ready.marker");
  const ready = existsSync(markerPath);
  if (!ready) await rm(baseDir, { recursive: true, force: true });
  await mkdir(baseDir, { recursive: true });
  // etcd replays its WAL from the last raft snapshot when it starts: with the default of one snapshot per
  // 100,000 entries, restarting on a 2 GiB database would replay 2 GiB of puts. etcd reads any flag from
  // ETCD_<FLAG>, and the test harness passes its environment on.
  process.env.ETCD_SNAPSHOT_COUNT ??= "64";
  const cluster = await startEtcdCluster({ baseDir, quotaBackendBytes });
  const endpoint = cluster.endpoints[0] as string;
  try {
    if (ready) {
      const marker = JSON.parse(await readFile(markerPath, "utf8")) as ReadyMarker;
      const databaseBytes = await databaseSize(endpoint);
      if (databaseBytes < marker.databaseBytes) {
        throw new Error(`cached database ${baseDir} shrank: rm -r it and run again`);
      }
      return { cluster, endpoint, databaseBytes, built: false, buildMs: 0 };
    }
    const started = performance.now();
    const writer = createEtcdWriter(cluster);
    let values = 0;
    let databaseBytes = await databaseSize(endpoint);
    while (databaseBytes < mebibytes * mebibyte) {
      // Smaller steps near the target, so that the database overshoots it by little.
      const missing = Math.floor((mebibytes * mebibyte - databaseBytes) / mebibyte);
      const puts = Math.max(1, Math.min(putsBetweenSizeChecks, Math.floor(missing * 0.8)));
      const batches = Array.from(
        { length: Math.min(concurrentWriters, puts) },
        () => [] as Array<[string, Buffer]>,
      );
      for (let index = 0; index < puts; index++) {
        batches[index % batches.length]?.push([
          `/registry/bench/value-${String(values++).padStart(6, "0")}`,
          randomBytes(valueBytes),
        ]);
      }
      await Promise.all(batches.map((batch) => writer.putMany(batch)));
      databaseBytes = await databaseSize(endpoint);
    }
    const marker: ReadyMarker = { targetMebibytes: mebibytes, values, databaseBytes };
    await writeFile(markerPath, `${JSON.stringify(marker)}\n`);
    return { cluster, endpoint, databaseBytes, built: true, buildMs: performance.now() - started };
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

async function databaseSize(endpoint: string): Promise<number> {
  const response = await fetch(`${endpoint}/v3/maintenance/status`, { method: "POST", body: "{}" });
  if (!response.ok) throw new Error(`etcd status answered ${response.status}`);
  return Number(((await response.json()) as { dbSize: string }).dbSize);
}
