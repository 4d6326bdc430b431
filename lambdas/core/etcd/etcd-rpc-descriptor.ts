// The part of etcd's gRPC API (api/etcdserverpb/rpc.proto) that the product calls, as a protobuf.js
// JSON descriptor: field numbers and types as etcd defines them. Kept in code rather than a .proto file
// so that Lambda bundles need no file beside them.

const header = { type: "ResponseHeader", id: 1 };

export const etcdRpcDescriptor = {
  nested: {
    etcdserverpb: {
      nested: {
        ResponseHeader: {
          fields: {
            cluster_id: { type: "uint64", id: 1 },
            member_id: { type: "uint64", id: 2 },
            revision: { type: "int64", id: 3 },
            raft_term: { type: "uint64", id: 4 },
          },
        },
        StatusRequest: { fields: {} },
        StatusResponse: {
          fields: {
            header,
            version: { type: "string", id: 2 },
            dbSize: { type: "int64", id: 3 },
            leader: { type: "uint64", id: 4 },
            raftIndex: { type: "uint64", id: 5 },
            raftTerm: { type: "uint64", id: 6 },
            raftAppliedIndex: { type: "uint64", id: 7 },
            errors: { rule: "repeated", type: "string", id: 8 },
            dbSizeInUse: { type: "int64", id: 9 },
            isLearner: { type: "bool", id: 10 },
          },
        },
        SnapshotRequest: { fields: {} },
        SnapshotResponse: {
          fields: {
            header,
            remaining_bytes: { type: "uint64", id: 2 },
            blob: { type: "bytes", id: 3 },
            version: { type: "string", id: 4 },
          },
        },
        HashKVRequest: { fields: { revision: { type: "int64", id: 1 } } },
        HashKVResponse: {
          fields: {
            header,
            hash: { type: "uint32", id: 2 },
            compact_revision: { type: "int64", id: 3 },
            hash_revision: { type: "int64", id: 4 },
          },
        },
        MemberListRequest: { fields: { linearizable: { type: "bool", id: 1 } } },
        Member: {
          fields: {
            ID: { type: "uint64", id: 1 },
            name: { type: "string", id: 2 },
            peerURLs: { rule: "repeated", type: "string", id: 3 },
            clientURLs: { rule: "repeated", type: "string", id: 4 },
            isLearner: { type: "bool", id: 5 },
          },
        },
        MemberListResponse: {
          fields: { header, members: { rule: "repeated", type: "Member", id: 2 } },
        },
        RangeRequest: {
          fields: {
            key: { type: "bytes", id: 1 },
            range_end: { type: "bytes", id: 2 },
            limit: { type: "int64", id: 3 },
            revision: { type: "int64", id: 4 },
            serializable: { type: "bool", id: 7 },
            keys_only: { type: "bool", id: 8 },
            count_only: { type: "bool", id: 9 },
          },
        },
        RangeResponse: {
          fields: { header, more: { type: "bool", id: 3 }, count: { type: "int64", id: 4 } },
        },
        KV: {
          methods: { Range: { requestType: "RangeRequest", responseType: "RangeResponse" } },
        },
        Maintenance: {
          methods: {
            Status: { requestType: "StatusRequest", responseType: "StatusResponse" },
            HashKV: { requestType: "HashKVRequest", responseType: "HashKVResponse" },
            Snapshot: {
              requestType: "SnapshotRequest",
              responseType: "SnapshotResponse",
              responseStream: true,
            },
          },
        },
        Cluster: {
          methods: {
            MemberList: { requestType: "MemberListRequest", responseType: "MemberListResponse" },
          },
        },
      },
    },
  },
};

/** Messages as @grpc/proto-loader decodes them with `longs: String`, `keepCase: true`. */
export interface ResponseHeader {
  cluster_id: string;
  member_id: string;
  revision: string;
  raft_term: string;
}
export interface StatusResponse {
  header: ResponseHeader | null;
  version: string;
  dbSize: string;
  leader: string;
  raftIndex: string;
  raftTerm: string;
  raftAppliedIndex: string;
  errors: string[];
  dbSizeInUse: string;
  isLearner: boolean;
}
export interface SnapshotResponse {
  remaining_bytes: string;
  blob: Buffer;
  version: string;
}
export interface HashKVResponse {
  header: ResponseHeader | null;
  hash: number;
  compact_revision: string;
  hash_revision: string;
}
export interface RangeResponse {
  header: ResponseHeader | null;
  more: boolean;
  count: string;
}
export interface MemberListResponse {
  header: ResponseHeader | null;
  members: Array<{ ID: string; name: string; peerURLs: string[]; clientURLs: string[]; isLearner: boolean }>;
}
