// The targets file's checks that need more than a field's own shape: what would parse but could never run.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { directEndpoints, parseTargetsFile } from "../../lambdas/core/config/target-config.js";

const member = { name: "cp-1", clientUrl: "https://10.0.1.10:2379", peerUrl: "https://10.0.1.10:2380" };
const problemsOf = (target: Record<string, unknown>): string => {
  try {
    parseTargetsFile({ targets: [{ name: "prod", schedule: "rate(1 hour)", ...target }] });
    return "";
  } catch (error) {
    return (error as Error).message;
  }
};

describe("the targets file", () => {
  it("accepts the committed example", async () => {
    const example = JSON.parse(
      await readFile(join(import.meta.dirname, "../../etcd-backup.targets.example.json"), "utf8"),
    );
    expect(() => parseTargetsFile(example)).not.toThrow();
  });

  it("refuses direct access that names no etcd endpoint anywhere", () => {
    expect(problemsOf({})).toMatch(/targets\.0\.etcd\.endpoints: direct access reaches etcd/);
    expect(problemsOf({ etcd: { endpoints: ["https://10.0.1.10:2379"] } })).toBe("");
  });

  it("enforces the members' HashKV unless the target says report, and accepts nothing else", () => {
    const etcd = { endpoints: [member.clientUrl] };
    const parse = (extra: Record<string, unknown>) =>
      parseTargetsFile({ targets: [{ name: "prod", schedule: "rate(1 hour)", etcd: { ...etcd, ...extra } }] })
        .targets[0]?.etcd.memberHashCheck;
    expect(parse({})).toBe("enforce");
    expect(parse({ memberHashCheck: "report" })).toBe("report");
    expect(problemsOf({ etcd: { ...etcd, memberHashCheck: "off" } })).toMatch(
      /targets\.0\.etcd\.memberHashCheck/,
    );
  });

  it("lets direct access reach etcd at the restore members' client URLs when it lists none", () => {
    const file = parseTargetsFile({
      targets: [
        {
          name: "prod",
          schedule: "rate(1 hour)",
          restore: { members: [{ ...member, instanceId: "i-0123456789abcdef0" }] },
        },
      ],
    });
    expect(directEndpoints(file.targets[0] as (typeof file.targets)[number])).toEqual([member.clientUrl]);
  });

  it("refuses ssm restore members without the instance Systems Manager would run their agent on", () => {
    expect(problemsOf({ etcd: { endpoints: [member.clientUrl] }, restore: { members: [member] } })).toMatch(
      /restore\.members\.0\.instanceId: the ssm executor runs cp-1's agent through Systems Manager/,
    );
  });

  it.each([
    ["cron(nonsense)", /schedule/],
    ["rate(0 hours)", /schedule.*at least 1/],
  ])("refuses the schedule %s, which synthesis would refuse later", (schedule, problem) => {
    expect(problemsOf({ schedule, etcd: { endpoints: [member.clientUrl] } })).toMatch(problem);
  });

  it.each(["/a", "a//b", "a/", "a b"])("refuses the key prefix %j", (prefix) => {
    expect(() =>
      parseTargetsFile({
        prefix,
        targets: [{ name: "prod", schedule: "rate(1 hour)", etcd: { endpoints: [member.clientUrl] } }],
      }),
    ).toThrow(/prefix: path segments/);
  });
});
