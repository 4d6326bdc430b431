// The ssm executor's free-space probe before approval: one Run Command to every member's instance, its
// answers read back within a bound (Systems Manager mocked with aws-sdk-client-mock: no local stand-in),
// and the shell lines it sends run for real here.
import { execFile } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  GetCommandInvocationCommand,
  InvocationDoesNotExist,
  SendCommandCommand,
  SSMClient,
  SSMServiceException,
} from "@aws-sdk/client-ssm";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { ErrorNames } from "../../lambdas/core/errors.js";
import { freeSpaceScript, isProbePath } from "../../lambdas/core/restore/free-space-document.js";
import {
  checkMembersFreeSpace,
  measureLocalFreeSpace,
} from "../../lambdas/core/restore/member-free-space.js";
import { measureFreeSpaceThroughSsm, parseFreeSpace } from "../../lambdas/core/restore/ssm-free-space.js";
import { makeTempDir } from "../support/temp-dir.js";

const ssm = mockClient(SSMClient);
afterEach(() => ssm.reset());
afterAll(() => ssm.restore());

const members = [
  { name: "cp-1", dataDir: "/var/lib/etcd", instanceId: "i-0000000000000aaa1" },
  { name: "cp-2", dataDir: "/var/lib/etcd", instanceId: "i-0000000000000bbb2" },
  { name: "cp-3", dataDir: "/data/etcd", instanceId: "i-0000000000000ccc3" },
];
const documentName = "etcd-backup-FreeSpaceDocument-0123456789ab";
const fast = { documentName, pollMs: 1 };
const sent = () => ssm.commandCalls(SendCommandCommand).map((call) => call.args[0].input);
/** Every instance answers at once, with `kib` KiB free on each data dir. */
const answerAll = (kib: (instanceId: string) => number) =>
  ssm.on(GetCommandInvocationCommand).callsFake(({ InstanceId }: { InstanceId: string }) => ({
    Status: "Success",
    StandardOutputContent: `free 0 ${kib(InstanceId)}\nfree 1 ${kib(InstanceId)}\n`,
  }));

describe("measureFreeSpaceThroughSsm", () => {
  it("sends the stack's free-space document to every member's instance and reads each one's answer", async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: "c0ffee00-0000-0000-0000-000000000000" } });
    ssm
      .on(GetCommandInvocationCommand, { InstanceId: "i-0000000000000aaa1" })
      // Run Command is eventually consistent: the invocation shows up after a moment.
      .rejectsOnce(new InvocationDoesNotExist({ message: "no invocation", $metadata: {} }))
      .resolvesOnce({ Status: "InProgress" })
      .resolves({ Status: "Success", StandardOutputContent: "free 0 2048\nfree 1 1\n" })
      .on(GetCommandInvocationCommand, { InstanceId: "i-0000000000000bbb2" })
      .resolves({ Status: "Success", StandardOutputContent: "free 0 4096\nfree 1 1\n" })
      .on(GetCommandInvocationCommand, { InstanceId: "i-0000000000000ccc3" })
      .resolves({ Status: "Success", StandardOutputContent: "free 0 1\nfree 1 8192\n" });

    const measured = await measureFreeSpaceThroughSsm(new SSMClient({ region: "eu-west-1" }), members, fast);

    expect(measured).toEqual([
      { member: "cp-1", freeBytes: 2048 * 1024 },
      { member: "cp-2", freeBytes: 4096 * 1024 },
      { member: "cp-3", freeBytes: 8192 * 1024 },
    ]);
    expect(sent()).toEqual([
      expect.objectContaining({
        DocumentName: documentName,
        InstanceIds: ["i-0000000000000aaa1", "i-0000000000000bbb2", "i-0000000000000ccc3"],
        TimeoutSeconds: 30,
        Parameters: { dataDirs: ["/var/lib/etcd /data/etcd"] },
      }),
    ]);
    for (const call of ssm.commandCalls(GetCommandInvocationCommand)) {
      expect(call.args[0].input.CommandId).toBe("c0ffee00-0000-0000-0000-000000000000");
    }
  });

  it("reports a member whose instance did not answer within the bound as unmeasured", async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: "c0ffee00-0000-0000-0000-000000000000" } });
    ssm
      .on(GetCommandInvocationCommand)
      .resolves({ Status: "Success", StandardOutputContent: "free 0 4096\nfree 1 4096\n" })
      .on(GetCommandInvocationCommand, { InstanceId: "i-0000000000000bbb2" })
      .resolves({ Status: "Pending" });

    const started = Date.now();
    const measured = await measureFreeSpaceThroughSsm(new SSMClient({ region: "eu-west-1" }), members, {
      documentName,
      timeoutMs: 1000,
      pollMs: 20,
    });

    expect(Date.now() - started).toBeLessThan(2000);
    expect(measured[1]).toEqual({
      member: "cp-2",
      unmeasured: "no answer from i-0000000000000bbb2 within 1 s",
    });
    expect(measured[0]).toEqual({ member: "cp-1", freeBytes: 4096 * 1024 });
  });

  it("says why a node's command failed", async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: "c0ffee00-0000-0000-0000-000000000000" } });
    answerAll(() => 4096)
      .on(GetCommandInvocationCommand, { InstanceId: "i-0000000000000ccc3" })
      .resolves({ Status: "TimedOut", StatusDetails: "DeliveryTimedOut" });

    const measured = await measureFreeSpaceThroughSsm(new SSMClient({ region: "eu-west-1" }), members, fast);

    expect(measured[2]).toEqual({
      member: "cp-3",
      unmeasured: "the command on i-0000000000000ccc3 ended TimedOut: DeliveryTimedOut",
    });
  });

  it("says why df gave no figure for a data dir", async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: "c0ffee00-0000-0000-0000-000000000000" } });
    answerAll(() => 4096)
      .on(GetCommandInvocationCommand, { InstanceId: "i-0000000000000ccc3" })
      .resolves({
        Status: "Success",
        StandardOutputContent: "free 0 4096\nfree 1 \n",
        StandardErrorContent: "df: /data: No such file or directory\n",
      });

    const measured = await measureFreeSpaceThroughSsm(new SSMClient({ region: "eu-west-1" }), members, fast);

    expect(measured[2]).toEqual({
      member: "cp-3",
      unmeasured:
        "df on i-0000000000000ccc3 gave no figure for /data/etcd: df: /data: No such file or directory",
    });
  });
});

describe("the ssm executor's free-space check before approval", () => {
  const check = (snapshotBytes: number) =>
    checkMembersFreeSpace(
      "ssm",
      members,
      snapshotBytes,
      {
        ssm: (probed) =>
          measureFreeSpaceThroughSsm(new SSMClient({ region: "eu-west-1" }), probed, {
            documentName,
            timeoutMs: 1000,
            pollMs: 20,
          }),
        local: measureLocalFreeSpace,
      },
      silentReporter,
    );

  it("lists every member's free space when all have room", async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: "c0ffee00-0000-0000-0000-000000000000" } });
    answerAll(() => 3);
    await expect(check(1024)).resolves.toBe(
      "Free space for the download, the new data dir and the old one (3× the snapshot: 3.0 KiB needed on each node): cp-1 3.0 KiB, cp-2 3.0 KiB, cp-3 3.0 KiB.",
    );
  });

  it("refuses the restore before approval when a node lacks room, naming it", async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: "c0ffee00-0000-0000-0000-000000000000" } });
    answerAll((instanceId) => (instanceId === "i-0000000000000bbb2" ? 2 : 3));
    await expect(check(1024)).rejects.toMatchObject({
      name: ErrorNames.InvalidInput,
      message: expect.stringMatching(
        /^cp-2 has 2\.0 KiB \(2048 bytes\) free on the filesystem of \/var\/lib\/etcd \(i-0000000000000bbb2\); the restore needs 3\.0 KiB \(3072 bytes\) there/,
      ),
    });
  });

  it("lets the restore go on, saying room could not be checked, when Systems Manager refuses the command", async () => {
    ssm.on(SendCommandCommand).rejects(
      new SSMServiceException({
        name: "AccessDeniedException",
        $fault: "client",
        $metadata: {},
        message: "not authorized to perform: ssm:SendCommand",
      }),
    );
    await expect(check(1024)).resolves.toMatch(
      /^Room on the members' nodes could not be checked beforehand \(AccessDeniedException: not authorized to perform: ssm:SendCommand\): the agents check it before anything stops/,
    );
  });

  it("lets the restore go on, saying room could not be checked, when no node answers in time", async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: "c0ffee00-0000-0000-0000-000000000000" } });
    ssm.on(GetCommandInvocationCommand).resolves({ Status: "InProgress" });
    await expect(check(1024)).resolves.toMatch(
      /^Room on the members' nodes could not be checked beforehand \(cp-1: no answer from i-0000000000000aaa1 within 1 s; cp-2: .*\): the agents check it before anything stops/,
    );
  });
});

describe("the free-space document's script", () => {
  /** What SSM runs for the parameter: {{ dataDirs }} replaced by its value, the lines as one sh script. */
  const runScript = (dataDirs: string[]) =>
    promisify(execFile)("sh", [
      "-c",
      freeSpaceScript.join("\n").replace("{{ dataDirs }}", dataDirs.join(" ")),
    ]);

  it("prints each data dir's free KiB under sh, the parent's for a data dir not made yet", async () => {
    const work = await makeTempDir("ssm-probe-");
    try {
      await mkdir(join(work.path, "here"));
      const { stdout } = await runScript([join(work.path, "here"), join(work.path, "not-yet"), "/no/such"]);
      const free = parseFreeSpace(stdout);
      expect(free.get(0)).toBeGreaterThan(0);
      expect(free.get(1)).toBeGreaterThan(0);
      // Neither the dir nor its parent: no figure, and the member is reported unmeasured.
      expect(free.has(2)).toBe(false);
      expect(stdout).toMatch(/^free 2 $/m);
    } finally {
      await work.remove();
    }
  });

  it("takes only paths that cannot be shell syntax, and the probe leaves the others to the agents", async () => {
    for (const path of ["/var/lib/etcd", "/data/etcd-1.2_x"]) expect(isProbePath(path), path).toBe(true);
    for (const path of ["relative", "/a b", "/a;reboot", "/$(id)", "/a*", "/it's", "/a\nb"]) {
      expect(isProbePath(path), path).toBe(false);
    }
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: "c0ffee00-0000-0000-0000-000000000000" } });
    answerAll(() => 4096);
    const measured = await measureFreeSpaceThroughSsm(
      new SSMClient({ region: "eu-west-1" }),
      [
        members[0] as (typeof members)[number],
        { ...(members[2] as (typeof members)[number]), dataDir: "/data/$(reboot)" },
      ],
      fast,
    );
    expect(sent()[0]?.InstanceIds).toEqual(["i-0000000000000aaa1"]);
    expect(sent()[0]?.Parameters).toEqual({ dataDirs: ["/var/lib/etcd"] });
    expect(measured).toEqual([
      { member: "cp-1", freeBytes: 4096 * 1024 },
      {
        member: "cp-3",
        unmeasured: "the probe takes only paths of letters, digits and ._/-, not /data/$(reboot)",
      },
    ]);
  });
});
