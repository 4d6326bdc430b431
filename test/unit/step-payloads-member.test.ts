// The resolved member the state machine carries from ResolveTarget to TakeSnapshot: the direct shape
// still parses, and a discovered member adds its pod and source.
import { describe, expect, it } from "vitest";
import { parseStepInput, takeSnapshotInput } from "../../lambdas/core/backup/step-payloads.js";
import { InvalidInputError } from "../../lambdas/core/errors.js";

const step = { input: { cluster: "prod" }, executionArn: "arn:aws:states:eu-west-1:1:execution:backup:x" };

describe("the resolved member in TakeSnapshot's input", () => {
  it("accepts the direct shape unchanged", () => {
    const member = { endpoint: "https://10.0.0.11:2379", memberId: "123", revision: 42 };
    const parsed = parseStepInput(
      takeSnapshotInput,
      { ...step, target: { snapshotId: "s", member } },
      "TakeSnapshot",
    );
    expect(parsed.target.member).toEqual(member);
  });

  it("carries a discovered member's pod and source", () => {
    const member = {
      endpoint: "https://127.0.0.1:2379",
      memberId: "123",
      revision: 42,
      source: "exec",
      pod: { namespace: "kube-system", name: "etcd-cp-1", container: "etcd", nodeName: "cp-1" },
    };
    const parsed = parseStepInput(
      takeSnapshotInput,
      { ...step, target: { snapshotId: "s", member } },
      "TakeSnapshot",
    );
    expect(parsed.target.member).toEqual(member);
  });

  it("refuses an unknown source or a pod without a name, naming the field", () => {
    const member = { endpoint: "https://127.0.0.1:2379", memberId: "1", revision: 1 };
    expect(() =>
      parseStepInput(
        takeSnapshotInput,
        { ...step, target: { snapshotId: "s", member: { ...member, source: "ssh" } } },
        "TakeSnapshot",
      ),
    ).toThrow(InvalidInputError);
    expect(() =>
      parseStepInput(
        takeSnapshotInput,
        {
          ...step,
          target: {
            snapshotId: "s",
            member: { ...member, pod: { namespace: "kube-system", name: "", container: "etcd" } },
          },
        },
        "TakeSnapshot",
      ),
    ).toThrow(/target\.member\.pod\.name/);
  });
});
