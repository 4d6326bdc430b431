// Writes data into a real etcd (demo and test data) through its JSON gateway (/v3/...), batching puts into
// transactions: one `etcdctl put` per key is far too slow to fill a test database.
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

export interface EtcdWriter {
  put(key: string, value: string | Buffer, options?: { lease?: string }): Promise<number>;
  /** Puts many keys, batched into transactions of at most 128 operations and about 1 MiB. */
  putMany(entries: Iterable<[string, string | Buffer]>): Promise<number>;
  delete(key: string): Promise<number>;
  compact(revision: number, physical?: boolean): Promise<void>;
  grantLease(ttlSeconds: number): Promise<string>;
  /** The cluster's current revision. */
  revision(): Promise<number>;
}

const maxOpsPerTxn = 128;
const maxBytesPerTxn = 1024 * 1024;

/** Where to write: any member's client URL, with client TLS when etcd requires it. */
export interface EtcdEndpoints {
  endpoints: string[];
  clientTls?: { ca: Buffer; cert: Buffer; key: Buffer } | undefined;
}

export function createEtcdWriter(cluster: EtcdEndpoints, memberIndex = 0): EtcdWriter {
  const endpoint = cluster.endpoints[memberIndex] as string;
  const post = (path: string, body: unknown) => postJson(endpoint, path, body, cluster.clientTls);
  const b64 = (value: string | Buffer) => Buffer.from(value).toString("base64");
  const revisionOf = (reply: unknown) => Number((reply as { header: { revision: string } }).header.revision);

  return {
    async put(key, value, options) {
      const body: Record<string, string> = { key: b64(key), value: b64(value) };
      if (options?.lease) body.lease = options.lease;
      return revisionOf(await post("/v3/kv/put", body));
    },
    async putMany(entries) {
      let batch: unknown[] = [];
      let batchBytes = 0;
      let revision = 0;
      const flush = async () => {
        if (batch.length === 0) return;
        revision = revisionOf(await post("/v3/kv/txn", { success: batch }));
        batch = [];
        batchBytes = 0;
      };
      for (const [key, value] of entries) {
        const size = Buffer.byteLength(key) + Buffer.byteLength(value);
        if (batch.length >= maxOpsPerTxn || (batch.length > 0 && batchBytes + size > maxBytesPerTxn))
          await flush();
        batch.push({ requestPut: { key: b64(key), value: b64(value) } });
        batchBytes += size;
      }
      await flush();
      return revision;
    },
    async delete(key) {
      return revisionOf(await post("/v3/kv/deleterange", { key: b64(key) }));
    },
    async compact(revision, physical = true) {
      await post("/v3/kv/compaction", { revision: String(revision), physical });
    },
    async grantLease(ttlSeconds) {
      const reply = (await post("/v3/lease/grant", { TTL: String(ttlSeconds) })) as { ID: string };
      return reply.ID;
    },
    async revision() {
      return revisionOf(await post("/v3/kv/range", { key: b64("\0"), count_only: true }));
    },
  };
}

function postJson(
  endpoint: string,
  path: string,
  body: unknown,
  tls: { ca: Buffer; cert: Buffer; key: Buffer } | undefined,
): Promise<unknown> {
  const payload = JSON.stringify(body);
  const request = endpoint.startsWith("https:") ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      `${endpoint}${path}`,
      {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
        ...(tls ?? {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (res.statusCode !== 200) reject(new Error(`etcd ${path} answered ${res.statusCode}: ${text}`));
          else resolve(JSON.parse(text));
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}
