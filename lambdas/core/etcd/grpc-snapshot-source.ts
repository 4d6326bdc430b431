// etcd's Maintenance.Snapshot as a byte stream: the database followed by etcd's 32-byte sha256 trailer,
// exactly the bytes `etcdctl snapshot save` writes to its file. Backpressure reaches etcd: the gRPC call
// is paused while the consumer is full, so HTTP/2 flow control stops the server.
import { Readable } from "node:stream";
import type { ClientReadableStream, ServiceError } from "@grpc/grpc-js";
import { EtcdAccessDeniedError, SnapshotCorruptError, SnapshotStreamInterruptedError } from "../errors.js";
import { snapshotTrailerBytes } from "../snapshot/snapshot-format.js";
import type { SnapshotSource } from "../snapshot/snapshot-source.js";
import { describeGrpcError, type EtcdClient, isRefusedByEtcd } from "./etcd-client.js";
import type { SnapshotResponse } from "./etcd-rpc-descriptor.js";

export interface SnapshotByteStream extends Readable {
  /** The database size etcd announced in the first message (trailer excluded), once known. */
  readonly databaseBytes: number | undefined;
  /** The etcd version etcd 3.6+ puts on every message; undefined for older servers. */
  readonly serverVersion: string | undefined;
}

/** Opens the snapshot stream of the member `client` talks to. */
export function openGrpcSnapshotStream(client: EtcdClient): SnapshotByteStream {
  return new GrpcSnapshotStream(client);
}

class GrpcSnapshotStream extends Readable implements SnapshotByteStream {
  databaseBytes: number | undefined;
  serverVersion: string | undefined;
  private readonly call: ClientReadableStream<SnapshotResponse>;
  private received = 0;
  private trailerSeen = false;

  constructor(private readonly client: EtcdClient) {
    super({ highWaterMark: 1024 * 1024 });
    this.call = client.openSnapshotCall();
    this.call.on("data", (message: SnapshotResponse) => this.accept(message));
    this.call.on("error", (error: ServiceError) => this.fail(error));
    this.call.on("end", () => this.finish());
    this.call.pause();
  }

  override _read(): void {
    this.call.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Cancelling ends etcd's long read transaction at once instead of when the stream would have ended.
    this.call.removeAllListeners("data");
    this.call.on("error", () => {});
    this.call.cancel();
    callback(error);
  }

  private accept(message: SnapshotResponse): void {
    const remaining = Number(message.remaining_bytes);
    const blob = message.blob;
    if (message.version) this.serverVersion = message.version;
    if (this.databaseBytes === undefined) this.databaseBytes = remaining + blob.length;
    const total = this.databaseBytes;
    if (this.trailerSeen) {
      this.destroy(this.corrupt(`a message arrived after the trailer`));
      return;
    }
    if (this.received === total) {
      // Every database byte has arrived: this message must be the 32-byte digest.
      if (remaining !== 0 || blob.length !== snapshotTrailerBytes) {
        this.destroy(
          this.corrupt(`expected the ${snapshotTrailerBytes}-byte trailer, got ${blob.length} bytes`),
        );
        return;
      }
      this.trailerSeen = true;
    } else {
      this.received += blob.length;
      if (this.received > total || remaining !== total - this.received) {
        this.destroy(
          this.corrupt(`remaining_bytes ${remaining} does not match ${total - this.received} still expected`),
        );
        return;
      }
    }
    if (!this.push(blob)) this.call.pause();
  }

  private finish(): void {
    if (this.destroyed) return;
    if (!this.trailerSeen) {
      this.destroy(
        this.corrupt(
          `stream ended after ${this.received} of ${this.databaseBytes ?? "unknown"} database bytes, without the trailer`,
        ),
      );
      return;
    }
    this.push(null);
  }

  private fail(error: ServiceError): void {
    if (this.destroyed) return;
    // A refusal (etcd's RBAC lets Snapshot only to root; a certificate it rejects) is not retried.
    this.destroy(
      isRefusedByEtcd(error)
        ? new EtcdAccessDeniedError(
            `etcd ${this.client.endpoint} refused the snapshot: ${describeGrpcError(error)}`,
            { cause: error },
          )
        : new SnapshotStreamInterruptedError(
            `snapshot stream from ${this.client.endpoint} broke off after ${this.received} bytes: ${describeGrpcError(error)}`,
            { cause: error },
          ),
    );
  }

  private corrupt(detail: string): SnapshotCorruptError {
    return new SnapshotCorruptError(`snapshot stream from ${this.client.endpoint} is malformed: ${detail}`);
  }
}

/** A snapshot source reading Maintenance.Snapshot from the member that `client` is connected to. */
export function createGrpcSnapshotSource(client: EtcdClient): SnapshotSource {
  return {
    description: client.endpoint,
    status: () => client.status(),
    hashKV: (revision) => client.hashKV(revision),
    openStream: () => openGrpcSnapshotStream(client),
    close: () => client.close(),
  };
}
