// Room on the members' nodes, checked before approval: the comparison with what the plans require, the
// approval request's line, and the local executor's measurement on this machine's filesystem (statfs).
import { statfs } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { ErrorNames } from "../../lambdas/core/errors.js";
import {
  checkMembersFreeSpace,
  type FreeSpaceProbes,
  freeBytesNeeded,
  judgeFreeSpace,
  type MeasureFreeSpace,
  measureLocalFreeSpace,
} from "../../lambdas/core/restore/member-free-space.js";
import { makeTempDir } from "../support/temp-dir.js";

const members = [
  { name: "cp-1", dataDir: "/var/lib/etcd", instanceId: "i-0000000000000aaa1" },
  { name: "cp-2", dataDir: "/var/lib/etcd", instanceId: "i-0000000000000bbb2" },
];
const needed = freeBytesNeeded(1000);
const unused: MeasureFreeSpace = () => Promise.reject(new Error("not this probe"));
const probes = (ssm: MeasureFreeSpace): FreeSpaceProbes => ({ ssm, local: unused });

describe("the room each node needs", () => {
  it("is three times the snapshot: the download, the new data dir and the old one kept", () => {
    expect(freeBytesNeeded(20512)).toBe(61536);
  });
});

describe("judging the free space measured on the members' nodes", () => {
  it("lists each member's free space against the need when all have room", () => {
    expect(
      judgeFreeSpace(
        members,
        [
          { member: "cp-1", freeBytes: 5000 },
          { member: "cp-2", freeBytes: needed },
        ],
        needed,
      ),
    ).toBe(
      "Free space for the download, the new data dir and the old one (3× the snapshot: 2.9 KiB needed on each node): cp-1 4.9 KiB, cp-2 2.9 KiB.",
    );
  });

  it("refuses the restore, naming each member short of room, its free bytes, the need and what to do", () => {
    const judge = () =>
      judgeFreeSpace(
        members,
        [
          { member: "cp-1", freeBytes: 2999 },
          { member: "cp-2", freeBytes: 10 },
        ],
        needed,
      );
    expect(judge).toThrow(
      expect.objectContaining({
        name: ErrorNames.InvalidInput,
        message: expect.stringMatching(
          /^cp-1 has 2\.9 KiB \(2999 bytes\) free on the filesystem of \/var\/lib\/etcd \(i-0000000000000aaa1\); cp-2 has 10 B \(10 bytes\) free .*; the restore needs 2\.9 KiB \(3000 bytes\) there on every member's node .* Free space on that filesystem .* or grow it, then start the restore again; nothing was changed$/,
        ),
      }),
    );
  });

  it("refuses on a member measured short of room even when another could not be measured", () => {
    expect(() =>
      judgeFreeSpace(
        members,
        [
          { member: "cp-1", unmeasured: "no answer from i-0000000000000aaa1 within 60 s" },
          { member: "cp-2", freeBytes: 10 },
        ],
        needed,
      ),
    ).toThrow(/^cp-2 has 10 B \(10 bytes\) free/);
  });

  it("names a member it could not measure, which its agent checks later", () => {
    expect(
      judgeFreeSpace(
        members,
        [
          { member: "cp-1", unmeasured: "no answer from i-0000000000000aaa1 within 60 s" },
          { member: "cp-2", freeBytes: 4000 },
        ],
        needed,
      ),
    ).toBe(
      "Free space for the download, the new data dir and the old one (3× the snapshot: 2.9 KiB needed on each node): cp-1 not measured (no answer from i-0000000000000aaa1 within 60 s; its agent checks before anything stops), cp-2 3.9 KiB.",
    );
  });

  it("says that room could not be checked beforehand when no member was measured", () => {
    expect(judgeFreeSpace(members, [], needed)).toBe(
      "Room on the members' nodes could not be checked beforehand (cp-1: no answer; cp-2: no answer): the agents check it before anything stops (2.9 KiB each, 3× the snapshot), and a node short of room ends the restore there with nothing changed.",
    );
  });
});

describe("checking the members' free space by executor", () => {
  it("asks the pod executor's nodes nothing, and says the agents check", async () => {
    const note = await checkMembersFreeSpace("pod", members, 1000, probes(unused), silentReporter);
    expect(note).toContain("not checked before approval under the pod executor");
    expect(note).toContain("room is checked by the agents before anything stops (2.9 KiB each");
  });

  it("does not block the restore when the probe fails, and says so", async () => {
    const failing: MeasureFreeSpace = () => Promise.reject(new Error("Systems Manager is unreachable"));
    await expect(checkMembersFreeSpace("ssm", members, 1000, probes(failing), silentReporter)).resolves.toBe(
      "Room on the members' nodes could not be checked beforehand (Error: Systems Manager is unreachable): the agents check it before anything stops (2.9 KiB each, 3× the snapshot), and a node short of room ends the restore there with nothing changed.",
    );
  });

  it("uses the executor's own probe", async () => {
    const local = await checkMembersFreeSpace(
      "local",
      members,
      1000,
      { ssm: unused, local: async () => members.map((member) => ({ member: member.name, freeBytes: 3000 })) },
      silentReporter,
    );
    expect(local).toMatch(/needed on each node\): cp-1 2\.9 KiB, cp-2 2\.9 KiB\.$/);
  });
});

describe("the local executor's measurement", () => {
  it("reads the data dir's filesystem, or its parent's while the data dir does not exist", async () => {
    const work = await makeTempDir("free-space-");
    try {
      const measured = await measureLocalFreeSpace([
        { name: "etcd-0", dataDir: work.path },
        { name: "etcd-1", dataDir: join(work.path, "not-yet") },
        { name: "etcd-2", dataDir: join(work.path, "no", "parent") },
      ]);
      const stats = await statfs(work.path);
      const [first, second, third] = measured;
      expect(first).toEqual({ member: "etcd-0", freeBytes: expect.any(Number) });
      expect(second).toEqual({ member: "etcd-1", freeBytes: expect.any(Number) });
      // The filesystem's free space moves with everything else on this machine: near statfs's own figure.
      for (const entry of [first, second]) {
        const free = entry && "freeBytes" in entry ? entry.freeBytes : -1;
        expect(free).toBeGreaterThan(0);
        expect(Math.abs(free - stats.bavail * stats.bsize)).toBeLessThan(256 * 1024 * 1024);
      }
      expect(third).toEqual({ member: "etcd-2", unmeasured: expect.stringMatching(/ENOENT/) });
    } finally {
      await work.remove();
    }
  });
});
