import { describe, expect, it } from "vitest";
import { describeErrorLine } from "../../cli/terminal-output.js";
import { EtcdUnavailableError, InvalidInputError } from "../../lambdas/core/errors.js";

describe("describeErrorLine", () => {
  it("names the error once even when its message quotes a nested error of the same name", () => {
    const error = new EtcdUnavailableError(
      "no etcd member can be snapshotted: EtcdUnavailableError: etcd http://127.0.0.1:1 Status failed",
    );
    expect(describeErrorLine(error)).toBe(
      "EtcdUnavailableError: no etcd member can be snapshotted: etcd http://127.0.0.1:1 Status failed",
    );
  });

  it("drops the empty resolution note grpc-js appends", () => {
    const error = new EtcdUnavailableError(
      "etcd a Status failed: UNAVAILABLE: No connection established. Resolution note: ; etcd b failed. Resolution note: ",
    );
    expect(describeErrorLine(error)).toBe(
      "EtcdUnavailableError: etcd a Status failed: UNAVAILABLE: No connection established; etcd b failed",
    );
  });

  it("keeps a resolution note that says something, and puts a multi-line message on one line", () => {
    expect(describeErrorLine(new InvalidInputError("first\n  second. Resolution note: DNS failed"))).toBe(
      "InvalidInputError: first second. Resolution note: DNS failed",
    );
  });
});
