import { describe, expect, it } from "vitest";
import { ErrorNames } from "../../lambdas/core/errors.js";
import { checkMembership } from "../../lambdas/core/restore/check-membership.js";

const configured = [
  { name: "cp-1", peerUrl: "https://10.0.1.10:2380" },
  { name: "cp-2", peerUrl: "https://10.0.1.11:2380" },
];
const live = [
  { name: "cp-2", peerURLs: ["https://10.0.1.11:2380/"] },
  { name: "cp-1", peerURLs: ["https://10.0.1.10:2380"] },
];

function refusal(liveMembers: Parameters<typeof checkMembership>[2], members = configured): string {
  try {
    checkMembership("prod-eu", members, liveMembers);
  } catch (error) {
    expect((error as Error).name).toBe(ErrorNames.InvalidInput);
    return (error as Error).message;
  }
  throw new Error("the membership was accepted");
}

describe("checkMembership", () => {
  it("accepts exactly etcd's members, in any order, a trailing slash aside", () => {
    expect(() => checkMembership("prod-eu", configured, live)).not.toThrow();
  });

  it("refuses a running member the targets file does not list, which would keep serving", () => {
    const message = refusal([...live, { name: "cp-3", peerURLs: ["https://10.0.1.12:2380"] }]);
    expect(message).toContain("restore.members of prod-eu does not match the running etcd");
    expect(message).toContain(
      "etcd has a member cp-3 (https://10.0.1.12:2380) that restore.members does not list",
    );
  });

  it("refuses learners and members added but not started as well", () => {
    expect(
      refusal([...live, { name: "cp-3", peerURLs: ["https://10.0.1.12:2380"], isLearner: true }]),
    ).toContain("etcd has a learner cp-3");
    expect(refusal([...live, { name: "", peerURLs: ["https://10.0.1.12:2380"] }])).toContain(
      "etcd has an unstarted member (https://10.0.1.12:2380)",
    );
  });

  it("refuses a configured member etcd does not have, and a peer URL that differs, naming each", () => {
    const message = refusal([
      { name: "cp-1", peerURLs: ["https://10.0.9.10:2380"] },
      { name: "cp-9", peerURLs: ["https://10.0.1.11:2380"] },
    ]);
    expect(message).toContain(
      "cp-1's peerUrl is https://10.0.1.10:2380, but etcd has https://10.0.9.10:2380",
    );
    expect(message).toContain("cp-2 is not a member of the running etcd");
    expect(message).toContain("etcd has a member cp-9");
  });
});
