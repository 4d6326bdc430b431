// What an agent pod's state says in the notice, for the states a node can leave it in.
import type { V1ContainerState, V1ContainerStatus, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { describeAgentPodState } from "../../lambdas/core/restore/agent-pod-state.js";

const pod = (status: V1Pod["status"]): V1Pod => ({ metadata: { name: "etcd-restore-abc-0" }, status });

describe("describeAgentPodState", () => {
  it("is the phase alone for a pod that ran to completion or runs", () => {
    expect(
      describeAgentPodState(
        pod({ phase: "Succeeded", containerStatuses: [container({ terminated: { exitCode: 0 } })] }),
      ),
    ).toBe("Succeeded");
    expect(
      describeAgentPodState(
        pod({ phase: "Running", containerStatuses: [container({ running: { startedAt: new Date() } })] }),
      ),
    ).toBe("Running");
  });

  it("gives a waiting container's reason and message, on one line", () => {
    const state = describeAgentPodState(
      pod({
        phase: "Pending",
        containerStatuses: [
          container({
            waiting: {
              reason: "ErrImagePull",
              message: 'failed to pull image "mirror/bookworm-curl":\n  401 Unauthorized',
            },
          }),
        ],
      }),
    );
    expect(state).toBe(
      'Pending — ErrImagePull: failed to pull image "mirror/bookworm-curl": 401 Unauthorized',
    );
  });

  it("gives a failed container's exit code and reason, and the kubelet's reason for the pod", () => {
    expect(
      describeAgentPodState(
        pod({
          phase: "Failed",
          reason: "DeadlineExceeded",
          message: "Pod was active on the node longer than the specified deadline",
          containerStatuses: [container({ terminated: { exitCode: 137, reason: "Error" } })],
        }),
      ),
    ).toBe(
      "Failed — exit 137 (Error); DeadlineExceeded: Pod was active on the node longer than the specified deadline",
    );
  });

  it("says when the pod was not scheduled, and keeps a long message short", () => {
    const state = describeAgentPodState(
      pod({
        phase: "Pending",
        conditions: [
          { type: "PodScheduled", status: "False", reason: "Unschedulable", message: "x".repeat(400) },
        ],
      }),
    );
    expect(state).toMatch(/^Pending — Unschedulable: x{299}…$/);
  });

  it("says Unknown for a pod with no status", () => {
    expect(describeAgentPodState(pod(undefined))).toBe("Unknown");
  });
});

function container(state: V1ContainerState): V1ContainerStatus {
  return { name: "agent", image: "agent", imageID: "", ready: false, restartCount: 0, state };
}
