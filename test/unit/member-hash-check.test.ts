// Which members' HashKV decide: the snapshot is corrupt when those holding other data at its revision are
// at least as many as those holding its own; a diverged minority and members that cannot answer are named.
import { describe, expect, it } from "vitest";
import { EtcdUnavailableError, SnapshotCorruptError } from "../../lambdas/core/errors.js";
import { checkMemberHashes, describeMemberHashCheck } from "../../lambdas/core/snapshot/member-hash-check.js";

/** A snapshot whose HashKV is 1000 + the member's compact revision. */
const snapshot = { revision: 50, kvHashAt: (compactRevision: number) => 1000 + compactRevision };

const answering = (description: string, hash: number, compactRevision = 10) => ({
  description,
  hashKV: async (revision: number) => {
    expect(revision).toBe(50);
    return { hash, compactRevision };
  },
});
const failing = (description: string, message: string) => ({
  description,
  hashKV: async () => {
    throw new EtcdUnavailableError(`etcd ${description} HashKV failed: ${message}`);
  },
});

describe("checkMemberHashes", () => {
  it("matches when every member answers the snapshot's hash for its own compact revision", async () => {
    const check = await checkMemberHashes(snapshot, [
      answering("m1", 1010),
      answering("m2", 1020, 20),
      answering("m3", 1010),
    ]);
    expect(check).toEqual({
      outcome: "matched",
      revision: 50,
      compactRevision: 10,
      hash: 1010,
      agreeing: ["m1", "m2", "m3"],
    });
    expect(describeMemberHashCheck(check)).toBe("matches the HashKV of m1, m2, m3 at revision 50");
  });

  it("names a diverged minority without failing: the snapshot holds what the others agree on", async () => {
    const check = await checkMemberHashes(snapshot, [
      answering("m1", 1010),
      answering("m2", 7),
      answering("m3", 1010),
    ]);
    expect(check).toMatchObject({ outcome: "matched", agreeing: ["m1", "m3"], diverged: ["m2"] });
    expect(describeMemberHashCheck(check)).toContain("DIVERGED: m2 hold other data");
  });

  it("fails when the member it was read from has diverged from the others", async () => {
    await expect(
      checkMemberHashes(snapshot, [answering("m1", 1010), answering("m2", 7), answering("m3", 7)]),
    ).rejects.toThrow(
      new SnapshotCorruptError(
        "the snapshot does not hold what m2 and m3 hold at revision 50: HashKV 7 (compacted at 10), the snapshot's 1010; HashKV 7 (compacted at 10), the snapshot's 1010; only m1 agrees with it",
      ),
    );
  });

  it("returns what it would have failed as mismatched when the target says report", async () => {
    const check = await checkMemberHashes(
      snapshot,
      [answering("m1", 1010), answering("m2", 7), answering("m3", 7)],
      "report",
    );
    expect(check).toEqual({
      outcome: "mismatched",
      revision: 50,
      reason:
        "the snapshot does not hold what m2 and m3 hold at revision 50: HashKV 7 (compacted at 10), the snapshot's 1010; HashKV 7 (compacted at 10), the snapshot's 1010; only m1 agrees with it",
      agreeing: ["m1"],
      diverged: ["m2", "m3"],
    });
    expect(describeMemberHashCheck(check)).toMatch(/^MISMATCHED \(reported, not failed\): the snapshot/);
  });

  it("fails on a tie, and when the only member that answers differs", async () => {
    await expect(checkMemberHashes(snapshot, [answering("m1", 1010), answering("m2", 7)])).rejects.toThrow(
      SnapshotCorruptError,
    );
    await expect(
      checkMemberHashes(snapshot, [answering("m1", 9), failing("m2", "connect ECONNREFUSED")]),
    ).rejects.toThrow(/^the snapshot does not hold what m1 holds at revision 50: HashKV 9/);
  });

  it("leaves out members that cannot answer, saying why, and compares with the rest", async () => {
    const check = await checkMemberHashes(snapshot, [
      failing("m1", "etcdserver: mvcc: required revision has been compacted"),
      answering("m2", 1010),
      failing("m3", "connect ECONNREFUSED"),
    ]);
    expect(check).toEqual({
      outcome: "matched",
      revision: 50,
      compactRevision: 10,
      hash: 1010,
      agreeing: ["m2"],
      notCompared: [
        "m1: compacted past revision 50 since the snapshot",
        "m3: did not answer HashKV: EtcdUnavailableError: etcd m3 HashKV failed: connect ECONNREFUSED",
      ],
    });
  });

  it("compares nothing when no member answers", async () => {
    const check = await checkMemberHashes(snapshot, [
      failing("m1", "etcdserver: mvcc: required revision is a future revision"),
    ]);
    expect(check).toEqual({
      outcome: "not-compared",
      revision: 50,
      reason: "m1: has not reached revision 50",
    });
  });
});
