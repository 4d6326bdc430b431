// Which failed etcd calls are refusals (not retried) and which may pass on a retry.
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { describeGrpcError, isRefusedByEtcd } from "../../lambdas/core/etcd/etcd-client.js";

const failure = (code: grpc.status, details: string) =>
  Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), {
    code,
    details,
    metadata: new grpc.Metadata(),
  }) as grpc.ServiceError;

describe("isRefusedByEtcd", () => {
  it.each([
    [grpc.status.UNAUTHENTICATED, "etcdserver: invalid auth token"],
    [grpc.status.PERMISSION_DENIED, "etcdserver: permission denied"],
    [
      grpc.status.UNAVAILABLE,
      "No connection established. Last error: ssl3_read_bytes:sslv3 alert bad certificate",
    ],
    [
      grpc.status.UNAVAILABLE,
      "No connection established. Last error: Error: unable to verify the first certificate",
    ],
    [grpc.status.UNAVAILABLE, "Hostname/IP does not match certificate's altnames: Host: etcd.example.com"],
    // etcd 3.4's Snapshot to a user without the root role (seen in stream-snapshot-to-s3.test.ts).
    [grpc.status.UNKNOWN, "auth: permission denied"],
  ])("refuses %s: %s", (code, details) => {
    expect(isRefusedByEtcd(failure(code, details))).toBe(true);
  });

  it.each([
    [grpc.status.UNAVAILABLE, "No connection established. Last error: connect ECONNREFUSED 10.0.1.10:2379"],
    [grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded after 3.001s"],
    [grpc.status.UNAVAILABLE, "etcdserver: leader changed"],
    [grpc.status.UNKNOWN, "etcdserver: request timed out"],
  ])("may retry %s: %s", (code, details) => {
    expect(isRefusedByEtcd(failure(code, details))).toBe(false);
  });
});

describe("describeGrpcError", () => {
  it("drops the empty resolution note grpc-js appends", () => {
    expect(
      describeGrpcError(failure(grpc.status.UNAVAILABLE, "No connection established. Resolution note: ")),
    ).toBe("UNAVAILABLE: No connection established");
  });
});
