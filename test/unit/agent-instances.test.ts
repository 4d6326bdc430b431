// ssm members named by tag: the lookup among Systems Manager's managed instances (its API mocked with
// aws-sdk-client-mock: no local stand-in) and what validation makes of the answer.
import { DescribeInstanceInformationCommand, SSMClient } from "@aws-sdk/client-ssm";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import { ErrorNames } from "../../lambdas/core/errors.js";
import { type ManagedInstance, resolveAgentInstances } from "../../lambdas/core/restore/agent-instances.js";
import { findManagedInstances } from "../../lambdas/handlers/shared/managed-instances.js";

const ssm = mockClient(SSMClient);
afterEach(() => ssm.reset());
afterAll(() => ssm.restore());

const members = [
  { name: "cp-1", instanceId: "i-0000000000000aaa1", clientUrl: "https://10.0.1.10:2379" },
  { name: "cp-2", instanceTag: { key: "etcd-member", value: "cp-2" }, clientUrl: "https://10.0.1.11:2379" },
];
const finder = (answers: Record<string, ManagedInstance[]>) => async (tag: { key: string; value: string }) =>
  answers[`${tag.key}=${tag.value}`] ?? [];

describe("resolveAgentInstances", () => {
  it("gives a tagged member the one instance that carries its tag, and says so", async () => {
    const resolved = await resolveAgentInstances(
      members,
      finder({ "etcd-member=cp-2": [{ instanceId: "i-0000000000000bbb2", pingStatus: "Online" }] }),
    );
    expect(resolved.members).toEqual([
      members[0],
      { name: "cp-2", instanceId: "i-0000000000000bbb2", clientUrl: "https://10.0.1.11:2379" },
    ]);
    expect(resolved.notes).toEqual(["cp-2 runs on i-0000000000000bbb2 (tag etcd-member=cp-2)."]);
  });

  it("flags an instance whose Systems Manager agent is not online", async () => {
    const resolved = await resolveAgentInstances(
      members,
      finder({ "etcd-member=cp-2": [{ instanceId: "i-0000000000000bbb2", pingStatus: "ConnectionLost" }] }),
    );
    expect(resolved.notes[0]).toContain("whose Systems Manager agent is ConnectionLost");
  });

  it("refuses a tag that matches no managed instance, or more than one, naming them", async () => {
    await expect(resolveAgentInstances(members, finder({}))).rejects.toMatchObject({
      name: ErrorNames.InvalidInput,
      message:
        "no instance managed by Systems Manager carries the tag etcd-member=cp-2 that names cp-2's node",
    });
    await expect(
      resolveAgentInstances(
        members,
        finder({ "etcd-member=cp-2": [{ instanceId: "i-1" }, { instanceId: "i-2" }] }),
      ),
    ).rejects.toMatchObject({
      name: ErrorNames.InvalidInput,
      message: expect.stringContaining(
        "2 managed instances carry the tag etcd-member=cp-2 that names cp-2's node (i-1, i-2)",
      ),
    });
  });
});

describe("findManagedInstances", () => {
  it("asks Systems Manager for the tag, every page", async () => {
    ssm
      .on(DescribeInstanceInformationCommand)
      .resolvesOnce({
        InstanceInformationList: [{ InstanceId: "i-1", PingStatus: "Online" }],
        NextToken: "page-2",
      })
      .resolvesOnce({ InstanceInformationList: [{ InstanceId: "mi-2", PingStatus: "Inactive" }] });
    const found = await findManagedInstances(
      { key: "Name", value: "cp-1" },
      new SSMClient({ region: "eu-west-1" }),
    );
    expect(found).toEqual([
      { instanceId: "i-1", pingStatus: "Online" },
      { instanceId: "mi-2", pingStatus: "Inactive" },
    ]);
    // The paginator reuses one input object, so each call is seen as it was last: the filter, and the
    // second page asked for by its token.
    const asked = ssm.commandCalls(DescribeInstanceInformationCommand).map((call) => call.args[0].input);
    expect(asked).toHaveLength(2);
    for (const input of asked) expect(input.Filters).toEqual([{ Key: "tag:Name", Values: ["cp-1"] }]);
    expect(asked[1]?.NextToken).toBe("page-2");
  });
});

describe("the targets file", () => {
  const targets = (member: Record<string, unknown>) => ({
    targets: [
      {
        name: "prod",
        schedule: "rate(1 hour)",
        restore: {
          executor: "ssm",
          members: [{ name: "cp-1", clientUrl: "https://a:2379", peerUrl: "https://a:2380", ...member }],
        },
      },
    ],
  });

  it("names an ssm member's node by instance id or by tag, exactly one of the two", () => {
    expect(() => parseTargetsFile(targets({ instanceId: "i-0001" }))).not.toThrow();
    expect(() => parseTargetsFile(targets({ instanceTag: { key: "Name", value: "cp-1" } }))).not.toThrow();
    expect(() => parseTargetsFile(targets({}))).toThrow(/instanceId \(i-… or mi-…\) or by instanceTag/);
    expect(() =>
      parseTargetsFile(targets({ instanceId: "i-0001", instanceTag: { key: "Name", value: "cp-1" } })),
    ).toThrow(/one of the two/);
    expect(() => parseTargetsFile(targets({ instanceTag: { key: "a=b", value: "x" } }))).toThrow(/tag key/);
  });
});
