// The snapshot against the cluster it came from: each member's HashKV at the snapshot's revision is
// compared with the one computed from the verified file (key-history-hash.ts) — proof that the copy holds
// what etcd holds, beyond a sound file. The member it was read from is asked first, then its peers: the
// product reads from a follower, and a follower whose data has diverged from the others (a data
// corruption etcd's own corruption check exists for) would hand over a sound file of the wrong data.
//
// The snapshot is corrupt when the members that hold other data at that revision are at least as many as
// those that hold the snapshot's (or, in `report` mode, recorded as mismatched). A minority that differs is
// reported, not failed: the backup holds what the cluster agrees on, and on-call hears of the diverged
// member. A member that can no longer answer
// (it compacted past the revision since, or is out of reach) is left out, with the reason.
import { describeError, SnapshotCorruptError } from "../errors.js";
import type { MemberKvHash } from "./snapshot-source.js";

/** What a target's etcd.memberHashCheck may say (target-config.ts); `enforce` unless it says otherwise. */
export const MemberHashCheckModes = ["enforce", "report"] as const;
export type MemberHashCheckMode = (typeof MemberHashCheckModes)[number];

/** A member to ask: how it is named in messages, and its HashKV. */
export interface HashedMember {
  description: string;
  hashKV(revision: number): Promise<MemberKvHash>;
}

export type MemberHashCheck =
  | {
      outcome: "matched";
      revision: number;
      /** The first agreeing member's answer (the source member's, when it answered). */
      compactRevision: number;
      hash: number;
      /** The members whose HashKV is the snapshot's. */
      agreeing: string[];
      /** Members that hold other data at the revision: fewer than those agreeing. */
      diverged?: string[];
      /** Members that could not answer, each with why. */
      notCompared?: string[];
    }
  | {
      /** Reported, not failed, as the target's memberHashCheck `report` asks. */
      outcome: "mismatched";
      revision: number;
      reason: string;
      agreeing: string[];
      diverged: string[];
      notCompared?: string[];
    }
  | { outcome: "not-compared"; revision: number; reason: string };

/** The snapshot's side: its revision, and its HashKV there for a given compact revision of the member. */
export interface SnapshotKvHash {
  revision: number;
  kvHashAt(compactRevision: number): number;
}

/** etcd's refusals that mean "not at this revision any more / yet", not a fault of the snapshot. */
const compactedPattern = /required revision has been compacted/i;
const futurePattern = /required revision is a future revision/i;

export async function checkMemberHashes(
  snapshot: SnapshotKvHash,
  members: readonly HashedMember[],
  /** `report`: a snapshot most members disagree with is returned as mismatched instead of thrown. */
  mode: MemberHashCheckMode = "enforce",
): Promise<MemberHashCheck> {
  const { revision } = snapshot;
  const agreeing: Array<{ member: string; answer: MemberKvHash }> = [];
  const diverged: Array<{ member: string; answer: MemberKvHash; expected: number }> = [];
  const notCompared: string[] = [];
  for (const member of members) {
    const answer = await member.hashKV(revision).catch((error: unknown) => {
      notCompared.push(`${member.description}: ${whyNotAnswered(error, revision)}`);
      return undefined;
    });
    if (!answer) continue;
    const expected = snapshot.kvHashAt(answer.compactRevision);
    if (answer.hash === expected) agreeing.push({ member: member.description, answer });
    else diverged.push({ member: member.description, answer, expected });
  }
  if (agreeing.length === 0 && diverged.length === 0) {
    return { outcome: "not-compared", revision, reason: notCompared.join("; ") };
  }
  if (diverged.length >= agreeing.length) {
    const holders = agreeing.map((entry) => entry.member);
    const answers = diverged
      .map(
        (entry) =>
          `HashKV ${entry.answer.hash} (compacted at ${entry.answer.compactRevision}), the snapshot's ${entry.expected}`,
      )
      .join("; ");
    const agreeingNote =
      holders.length > 0
        ? `; only ${holders.join(" and ")} agree${holders.length === 1 ? "s" : ""} with it`
        : "";
    const names = diverged.map((entry) => entry.member);
    const reason = `the snapshot does not hold what ${names.join(" and ")} ${names.length === 1 ? "holds" : "hold"} at revision ${revision}: ${answers}${agreeingNote}`;
    if (mode === "enforce") throw new SnapshotCorruptError(reason);
    return {
      outcome: "mismatched",
      revision,
      reason,
      agreeing: holders,
      diverged: names,
      ...(notCompared.length > 0 ? { notCompared } : {}),
    };
  }
  const first = agreeing[0] as { answer: MemberKvHash };
  return {
    outcome: "matched",
    revision,
    compactRevision: first.answer.compactRevision,
    hash: first.answer.hash,
    agreeing: agreeing.map((entry) => entry.member),
    ...(diverged.length > 0 ? { diverged: diverged.map((entry) => entry.member) } : {}),
    ...(notCompared.length > 0 ? { notCompared } : {}),
  };
}

function whyNotAnswered(error: unknown, revision: number): string {
  const detail = describeError(error);
  if (compactedPattern.test(detail)) return `compacted past revision ${revision} since the snapshot`;
  if (futurePattern.test(detail)) return `has not reached revision ${revision}`;
  return `did not answer HashKV: ${detail}`;
}

/** Every member was asked and answered the snapshot's own HashKV: nothing for a person to look at. */
export function allMembersAgreed(check: MemberHashCheck): boolean {
  return check.outcome === "matched" && check.diverged === undefined && check.notCompared === undefined;
}

/** One line for logs and the CLI. */
export function describeMemberHashCheck(check: MemberHashCheck): string {
  if (check.outcome === "not-compared") return `not compared with the members: ${check.reason}`;
  if (check.outcome === "mismatched") return `MISMATCHED (reported, not failed): ${check.reason}`;
  const parts = [`matches the HashKV of ${check.agreeing.join(", ")} at revision ${check.revision}`];
  if (check.diverged) parts.push(`DIVERGED: ${check.diverged.join(", ")} hold other data`);
  if (check.notCompared) parts.push(`not compared: ${check.notCompared.join("; ")}`);
  return parts.join("; ");
}
