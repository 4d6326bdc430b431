// What the data path needs from any way of reading a snapshot out of etcd (gRPC directly or through a
// port-forward, or etcdctl through the Kubernetes exec API).
import type { Readable } from "node:stream";
import type { MemberStatus } from "../etcd/etcd-client.js";

export interface MemberKvHash {
  hash: number;
  compactRevision: number;
}

export interface SnapshotSource {
  /** Where the snapshot comes from, for messages: an endpoint or a pod. */
  readonly description: string;
  /** The member's status (revision, db size, version, ids); taken just before and just after the stream. */
  status(): Promise<MemberStatus>;
  /**
   * The member's HashKV at `revision` and the compact revision it hashed from (-1: never compacted):
   * compared with the snapshot's own (key-history-hash.ts) once it is verified.
   */
  hashKV(revision: number): Promise<MemberKvHash>;
  /** The snapshot bytes: the bbolt database followed by etcd's 32-byte sha256 trailer. */
  openStream(): Readable & {
    readonly databaseBytes?: number | undefined;
    readonly serverVersion?: string | undefined;
  };
  close(): void;
}
