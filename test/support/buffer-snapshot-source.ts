// A snapshot source that serves given bytes, for feeding the data path damaged snapshots.
import { Readable } from "node:stream";
import type { MemberStatus } from "../../lambdas/core/etcd/etcd-client.js";
import type { SnapshotSource } from "../../lambdas/core/snapshot/snapshot-source.js";

export function bufferSnapshotSource(
  bytes: Buffer,
  options: { chunkSize?: number; failAfter?: number } = {},
): SnapshotSource {
  const chunkSize = options.chunkSize ?? 32 * 1024;
  const status: MemberStatus = {
    endpoint: "buffer",
    memberId: "1",
    clusterId: "1",
    leaderId: "1",
    revision: 1,
    raftIndex: 1,
    dbSize: bytes.length,
    dbSizeInUse: bytes.length,
    version: "3.4.23",
    isLearner: false,
    errors: [],
  };
  return {
    description: "buffer",
    status: async () => status,
    hashKV: async () => {
      throw new Error("a buffer has no member to ask for its HashKV");
    },
    openStream: () =>
      Readable.from(
        (function* () {
          for (let offset = 0; offset < bytes.length; offset += chunkSize) {
            if (options.failAfter !== undefined && offset >= options.failAfter)
              throw new Error("source failed");
            yield bytes.subarray(offset, offset + chunkSize);
          }
        })(),
        { objectMode: false },
      ),
    close: () => {},
  };
}
