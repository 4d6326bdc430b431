// Whether every member's node has room for the restore, found before anyone is asked to approve it. The
// agents check the same at prepare (etcd-restore-agent.sh), after approval and before anything stops;
// checked here too so that approvers never sign off on a restore that cannot run. Both measure the
// filesystem that holds the data dir: the data dir's own (a volume mounted there), else its parent's.
import { statfs } from "node:fs/promises";
import { dirname } from "node:path";
import type { StepReporter } from "../backup/backup-dependencies.js";
import { formatBytes } from "../byte-size.js";
import type { RestoreLayout } from "../config/target-config.js";
import { describeError, InvalidInputError } from "../errors.js";

/** The download, the restored data dir and the old one kept for a rollback: each about the snapshot's size. */
export const freeSpaceFactor = 3;

/**
 * What each member's node needs free on its data dir's filesystem: the download, the restored data dir
 * and the old one, kept for a rollback, each about the size of the snapshot. The plans' minimumFreeBytes.
 */
export function freeBytesNeeded(snapshotBytes: number): number {
  return snapshotBytes * freeSpaceFactor;
}

/** How long validation waits for the nodes' answers, at most: within its function's timeout. */
export const freeSpaceProbeSeconds = 60;

export interface MemberDataDir {
  name: string;
  dataDir: string;
  /** The node, for the ssm executor. */
  instanceId?: string;
}

/** One member's free bytes, or why they could not be measured. */
export type MemberFreeSpace = { member: string } & ({ freeBytes: number } | { unmeasured: string });

/** Measures every member's free space; throws when it cannot measure at all. */
export type MeasureFreeSpace = (members: MemberDataDir[]) => Promise<MemberFreeSpace[]>;

/** How validation measures, by executor: the pod executor has no way before approval. */
export type FreeSpaceProbes = Record<Exclude<RestoreLayout["executor"], "pod">, MeasureFreeSpace>;

/**
 * The approval request's line on free space. Throws InvalidInputError, naming each member short of room,
 * when one is; a probe that cannot measure never blocks the restore, since the agents check again.
 */
export async function checkMembersFreeSpace(
  executor: RestoreLayout["executor"],
  members: MemberDataDir[],
  snapshotBytes: number,
  probes: FreeSpaceProbes,
  reporter: StepReporter,
): Promise<string> {
  const needed = freeBytesNeeded(snapshotBytes);
  if (executor === "pod") {
    return `Free space on the members' nodes is not checked before approval under the pod executor (that would take starting pods): room is checked by the agents before anything stops (${formatBytes(needed)} each, ${freeSpaceFactor}× the snapshot).`;
  }
  let measured: MemberFreeSpace[];
  try {
    measured = await probes[executor](members);
  } catch (error) {
    reporter.warn("free space on the members' nodes could not be measured", { error: describeError(error) });
    return uncheckedNote(describeError(error), needed);
  }
  reporter.info("free space on the members' nodes", { needed, measured });
  return judgeFreeSpace(members, measured, needed);
}

/** The comparison: throws when a measured member is short of room, else words what was found. */
export function judgeFreeSpace(
  members: MemberDataDir[],
  measured: MemberFreeSpace[],
  needed: number,
): string {
  const found = members.map((member) => ({
    member,
    space: measured.find((entry) => entry.member === member.name) ?? { unmeasured: "no answer" },
  }));
  const short = found.flatMap(({ member, space }) =>
    "freeBytes" in space && space.freeBytes < needed
      ? [
          `${member.name} has ${formatBytes(space.freeBytes)} (${space.freeBytes} bytes) free on the filesystem of ${member.dataDir}${member.instanceId ? ` (${member.instanceId})` : ""}`,
        ]
      : [],
  );
  if (short.length > 0) {
    throw new InvalidInputError(
      `${short.join("; ")}; the restore needs ${formatBytes(needed)} (${needed} bytes) there on every member's node (${freeSpaceFactor}× the snapshot: the download, the new data dir and the old one, kept for a rollback). Free space on that filesystem (data dirs kept by earlier restores, <dataDir>.pre-restore-<id>, or pre-restore-<id> inside a data dir that is a volume, can go once nobody needs them) or grow it, then start the restore again; nothing was changed`,
    );
  }
  if (found.every(({ space }) => "unmeasured" in space)) {
    return uncheckedNote(
      found
        .map(({ member, space }) => `${member.name}: ${"unmeasured" in space ? space.unmeasured : ""}`)
        .join("; "),
      needed,
    );
  }
  const words = found.map(({ member, space }) =>
    "freeBytes" in space
      ? `${member.name} ${formatBytes(space.freeBytes)}`
      : `${member.name} not measured (${space.unmeasured}; its agent checks before anything stops)`,
  );
  return `Free space for the download, the new data dir and the old one (${freeSpaceFactor}× the snapshot: ${formatBytes(needed)} needed on each node): ${words.join(", ")}.`;
}

function uncheckedNote(reason: string, needed: number): string {
  return `Room on the members' nodes could not be checked beforehand (${reason}): the agents check it before anything stops (${formatBytes(needed)} each, ${freeSpaceFactor}× the snapshot), and a node short of room ends the restore there with nothing changed.`;
}

/**
 * The local executor's probe (the local stack and the demo): the agents run on this machine, so the
 * data dirs' filesystems are measured here. Available blocks, as df's "Avail" reports them.
 */
export const measureLocalFreeSpace: MeasureFreeSpace = (members) =>
  Promise.all(
    members.map(async (member): Promise<MemberFreeSpace> => {
      try {
        return { member: member.name, freeBytes: await availableBytes(member.dataDir) };
      } catch (error) {
        return { member: member.name, unmeasured: describeError(error) };
      }
    }),
  );

/** The free bytes of the filesystem that holds `dataDir`, or of its parent's while it does not exist. */
async function availableBytes(dataDir: string): Promise<number> {
  const stats = await statfs(dataDir).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
    return statfs(dirname(dataDir));
  });
  return stats.bavail * stats.bsize;
}
