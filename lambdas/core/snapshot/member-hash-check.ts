// The snapshot against the member it came from: the member's HashKV at the snapshot's revision must equal
// the one computed from the verified file (key-history-hash.ts) — proof that the copy holds what etcd
// holds, beyond a sound file. A different hash fails the snapshot as corrupt; a member that can no longer
// answer (it compacted past the revision since, or is out of reach) leaves the snapshot verified, with the
// reason the comparison was not made.
import { describeError, SnapshotCorruptError } from "../errors.js";
import type { MemberKvHash } from "./snapshot-source.js";

export type MemberHashCheck =
  | { outcome: "matched"; revision: number; compactRevision: number; hash: number }
  | { outcome: "not-compared"; revision: number; reason: string };

/** etcd's refusals that mean "not at this revision any more / yet", not a fault of the snapshot. */
const compactedPattern = /required revision has been compacted/i;
const futurePattern = /required revision is a future revision/i;

/** The snapshot's side: its revision, and its HashKV there for a given compact revision of the member. */
export interface SnapshotKvHash {
  revision: number;
  kvHashAt(compactRevision: number): number;
}

export async function checkMemberHash(
  report: SnapshotKvHash,
  askMember: (revision: number) => Promise<MemberKvHash>,
  member: string,
): Promise<MemberHashCheck> {
  const { revision } = report;
  let answer: MemberKvHash;
  try {
    answer = await askMember(revision);
  } catch (error) {
    const detail = describeError(error);
    const reason = compactedPattern.test(detail)
      ? `${member} has compacted past revision ${revision} since the snapshot`
      : futurePattern.test(detail)
        ? `${member} has not reached revision ${revision}`
        : `${member} did not answer HashKV: ${detail}`;
    return { outcome: "not-compared", revision, reason };
  }
  const expected = report.kvHashAt(answer.compactRevision);
  if (expected !== answer.hash) {
    throw new SnapshotCorruptError(
      `the snapshot does not hold what ${member} holds at revision ${revision}: its HashKV is ${answer.hash} (compacted at ${answer.compactRevision}), the snapshot's ${expected}`,
    );
  }
  return { outcome: "matched", revision, compactRevision: answer.compactRevision, hash: answer.hash };
}

/** One line for logs and the CLI. */
export function describeMemberHashCheck(check: MemberHashCheck): string {
  return check.outcome === "matched"
    ? `matches the member's HashKV at revision ${check.revision} (${check.hash})`
    : `not compared with the member: ${check.reason}`;
}
