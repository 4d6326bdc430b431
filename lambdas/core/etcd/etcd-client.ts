// A gRPC client for the few etcd calls the product makes (Status, Snapshot, HashKV, MemberList), over
// plain TCP or mutual TLS. @grpc/grpc-js is the client etcd's own JavaScript users build on (the etcd3
// package wraps it); calling it directly keeps the snapshot stream's flow control in our hands.
import * as grpc from "@grpc/grpc-js";
import { fromJSON } from "@grpc/proto-loader";
import { EtcdAccessDeniedError, EtcdUnavailableError, InvalidInputError } from "../errors.js";
import { isRefusalText } from "./etcd-refusal.js";
import {
  etcdRpcDescriptor,
  type HashKVResponse,
  type MemberListResponse,
  type RangeResponse,
  type SnapshotResponse,
  type StatusResponse,
} from "./etcd-rpc-descriptor.js";

export interface EtcdTlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** The name the server certificate must carry, when it differs from the endpoint's host (port-forward). */
  serverName?: string;
}

export interface EtcdConnection {
  /** `http://host:port` or `https://host:port`. */
  endpoint: string;
  tls?: EtcdTlsMaterial;
  /** How long a unary call may take, including connecting. */
  callTimeoutMs?: number;
}

export interface MemberStatus {
  endpoint: string;
  memberId: string;
  clusterId: string;
  leaderId: string;
  revision: number;
  raftIndex: number;
  dbSize: number;
  dbSizeInUse: number;
  version: string;
  isLearner: boolean;
  errors: string[];
}

export interface EtcdClient {
  readonly endpoint: string;
  status(): Promise<MemberStatus>;
  hashKV(revision: number): Promise<{ hash: number; compactRevision: number; revision: number }>;
  memberList(): Promise<MemberListResponse["members"]>;
  /**
   * How many keys exist (under `prefix`, or all) now, or at `atRevision` (not yet compacted), with the
   * member's current revision.
   */
  countKeys(prefix?: string, atRevision?: number): Promise<{ count: number; revision: number }>;
  /** The raw Maintenance.Snapshot message stream; see grpc-snapshot-source.ts for the byte stream. */
  openSnapshotCall(): grpc.ClientReadableStream<SnapshotResponse>;
  close(): void;
}

type UnaryMethod<Request, Response> = (
  request: Request,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response: Response) => void,
) => void;

interface MaintenanceStub extends grpc.Client {
  Status: UnaryMethod<object, StatusResponse>;
  HashKV: UnaryMethod<{ revision: string }, HashKVResponse>;
  Snapshot(request: object): grpc.ClientReadableStream<SnapshotResponse>;
}
interface KvStub extends grpc.Client {
  Range: UnaryMethod<object, RangeResponse>;
}
interface ClusterStub extends grpc.Client {
  MemberList: UnaryMethod<{ linearizable: boolean }, MemberListResponse>;
}

interface EtcdServices {
  Maintenance: new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: object,
  ) => MaintenanceStub;
  Cluster: new (address: string, credentials: grpc.ChannelCredentials, options?: object) => ClusterStub;
  KV: new (address: string, credentials: grpc.ChannelCredentials, options?: object) => KvStub;
}

let services: EtcdServices | undefined;

/** Built at the first client, not at import: protobuf.js resolving the descriptor takes ~25 ms of a cold start. */
function etcdServices(): EtcdServices {
  services ??= (
    grpc.loadPackageDefinition(
      fromJSON(etcdRpcDescriptor as Parameters<typeof fromJSON>[0], {
        keepCase: true,
        longs: String,
        defaults: true,
        arrays: true,
      }),
    ) as unknown as { etcdserverpb: EtcdServices }
  ).etcdserverpb;
  return services;
}

/** How long HashKV may take: the member reads every revision in its key bucket to answer. */
const hashKvTimeoutMs = 120_000;

export function createEtcdClient(connection: EtcdConnection): EtcdClient {
  const url = parseEndpoint(connection.endpoint);
  const secure = url.protocol === "https:";
  if (!secure && connection.tls?.cert) {
    throw new InvalidInputError(
      `endpoint ${connection.endpoint} is http:// but client certificates were given: use https://`,
    );
  }
  const credentials = secure
    ? grpc.credentials.createSsl(
        connection.tls?.ca ?? null,
        connection.tls?.key ?? null,
        connection.tls?.cert ?? null,
      )
    : grpc.credentials.createInsecure();
  const channelOptions: Record<string, string | number> = {
    "grpc.max_receive_message_length": -1,
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    // HTTP/2's default 64 KiB window makes etcd wait for a WINDOW_UPDATE every two messages; 1 MiB lets it
    // stream (measured: 0.5-0.7x of etcdctl save to a file, then 0.8-1.2x), still bounding what is in flight.
    "grpc-node.flow_control_window": 1024 * 1024,
  };
  if (connection.tls?.serverName) channelOptions["grpc.ssl_target_name_override"] = connection.tls.serverName;
  const address = `${url.hostname}:${url.port || (secure ? "443" : "80")}`;
  const etcdserverpb = etcdServices();
  const maintenance = new etcdserverpb.Maintenance(address, credentials, channelOptions);
  // Share the channel: a second stub on the same channel costs no connection.
  const cluster = new etcdserverpb.Cluster(address, credentials, {
    ...channelOptions,
    channelOverride: maintenance.getChannel(),
  });
  const kv = new etcdserverpb.KV(address, credentials, {
    ...channelOptions,
    channelOverride: maintenance.getChannel(),
  });
  const callTimeoutMs = connection.callTimeoutMs ?? 10_000;

  const unary = <Request, Response>(
    name: string,
    method: UnaryMethod<Request, Response>,
    stub: grpc.Client,
    request: Request,
    timeoutMs = callTimeoutMs,
  ): Promise<Response> =>
    new Promise((resolve, reject) => {
      method.call(stub, request, { deadline: Date.now() + timeoutMs }, (error, response) => {
        if (error) {
          const message = `etcd ${connection.endpoint} ${name} failed: ${describeGrpcError(error)}`;
          reject(
            isRefusedByEtcd(error)
              ? new EtcdAccessDeniedError(message, { cause: error })
              : new EtcdUnavailableError(message, { cause: error }),
          );
        } else resolve(response);
      });
    });

  return {
    endpoint: connection.endpoint,
    async status() {
      const reply = await unary("Status", maintenance.Status, maintenance, {});
      return {
        endpoint: connection.endpoint,
        memberId: reply.header?.member_id ?? "0",
        clusterId: reply.header?.cluster_id ?? "0",
        leaderId: reply.leader,
        revision: Number(reply.header?.revision ?? 0),
        raftIndex: Number(reply.raftIndex),
        dbSize: Number(reply.dbSize),
        dbSizeInUse: Number(reply.dbSizeInUse),
        version: reply.version,
        isLearner: reply.isLearner,
        errors: reply.errors,
      };
    },
    async hashKV(revision) {
      // The member reads its whole key history to answer: far longer than a status on a large database.
      const reply = await unary(
        "HashKV",
        maintenance.HashKV,
        maintenance,
        { revision: String(revision) },
        Math.max(callTimeoutMs, hashKvTimeoutMs),
      );
      return {
        hash: reply.hash,
        compactRevision: Number(reply.compact_revision),
        revision: Number(reply.header?.revision ?? 0),
      };
    },
    async memberList() {
      return (await unary("MemberList", cluster.MemberList, cluster, { linearizable: false })).members;
    },
    async countKeys(prefix, atRevision) {
      const reply = await unary("Range", kv.Range, kv, {
        ...keyRange(prefix),
        count_only: true,
        ...(atRevision === undefined ? {} : { revision: String(atRevision) }),
      });
      return { count: Number(reply.count), revision: Number(reply.header?.revision ?? 0) };
    },
    openSnapshotCall() {
      return maintenance.Snapshot({});
    },
    close() {
      maintenance.close();
    },
  };
}

/** A prefix's range: from the prefix to the prefix with its last byte incremented; "\0".."\0" is every key. */
function keyRange(prefix: string | undefined): { key: Buffer; range_end: Buffer } {
  if (!prefix) return { key: Buffer.from([0]), range_end: Buffer.from([0]) };
  const key = Buffer.from(prefix);
  const end = Buffer.from(key);
  let index = end.length - 1;
  while (index >= 0 && end[index] === 0xff) index--;
  if (index < 0) return { key, range_end: Buffer.from([0]) };
  end[index] = (end[index] as number) + 1;
  return { key, range_end: end.subarray(0, index + 1) };
}

function parseEndpoint(endpoint: string): URL {
  try {
    const url = new URL(endpoint);
    if (url.protocol === "http:" || url.protocol === "https:") return url;
  } catch {
    // fall through to the error below
  }
  throw new InvalidInputError(
    `invalid etcd endpoint "${endpoint}": expected http://host:port or https://host:port`,
  );
}

export function describeGrpcError(error: grpc.ServiceError): string {
  const code = grpc.status[error.code] ?? String(error.code);
  // grpc-js appends an empty "Resolution note: " when it has none to give.
  return `${code}: ${error.details || error.message}`.replace(/\.?\s*Resolution note:\s*$/, "");
}

/** Whether a failed call is a refusal of the product's identity, which no retry changes. */
export function isRefusedByEtcd(error: grpc.ServiceError): boolean {
  if (error.code === grpc.status.UNAUTHENTICATED || error.code === grpc.status.PERMISSION_DENIED) return true;
  return isRefusalText(`${error.details ?? ""} ${error.message ?? ""}`);
}
