// The PresignRole session that signs the agents' URLs: asked for the hour role chaining allows, reused
// while it outlives the URL it signs, renewed otherwise.
import { AssumeRoleCommand, STSClient } from "@aws-sdk/client-sts";
import { mockClient } from "aws-sdk-client-mock";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { presignRoleSession } from "../../lambdas/handlers/shared/restore-dependencies-from-environment.js";

const roleArn = "arn:aws:iam::111122223333:role/etcd-backup-presign";
const sts = mockClient(STSClient);
const start = new Date("2026-11-24T02:00:00Z").getTime();

let issued = 0;
/** STS's answer: a session of the asked duration from now, numbered by the order of issue. */
const issue = (input: { DurationSeconds: number }) => {
  issued += 1;
  return {
    Credentials: {
      AccessKeyId: `AKIA${issued}`,
      SecretAccessKey: "secret",
      SessionToken: "token",
      Expiration: new Date(Date.now() + input.DurationSeconds * 1000),
    },
  };
};

beforeEach(() => {
  vi.useFakeTimers({ now: start });
  sts.reset();
  issued = 0;
  sts.on(AssumeRoleCommand).callsFake(issue);
});

afterEach(() => {
  vi.useRealTimers();
});

const keyId = async (credentials: unknown) => ((await credentials) as { accessKeyId: string }).accessKeyId;

describe("presign role session", () => {
  it("asks STS for one hour, the ceiling of a role-chained session", async () => {
    const signing = presignRoleSession(roleArn, new STSClient({}));
    await signing(1500);
    expect(sts.commandCalls(AssumeRoleCommand).map((call) => call.args[0].input)).toEqual([
      expect.objectContaining({ RoleArn: roleArn, DurationSeconds: 3600 }),
    ]);
  });

  it("reuses the session while it outlives the URL it signs, and assumes the role again once it would not", async () => {
    const signing = presignRoleSession(roleArn, new STSClient({}));
    expect(await keyId(signing(1500))).toBe("AKIA1");
    vi.setSystemTime(start + 2100 * 1000); // 1500 s left
    expect(await keyId(signing(1500))).toBe("AKIA1");
    vi.setSystemTime(start + 2101 * 1000);
    expect(await keyId(signing(1500))).toBe("AKIA2");
  });

  it("signs an hour-long URL only with a session at most five minutes old", async () => {
    const signing = presignRoleSession(roleArn, new STSClient({}));
    expect(await keyId(signing(3600))).toBe("AKIA1");
    vi.setSystemTime(start + 300 * 1000);
    expect(await keyId(signing(3600))).toBe("AKIA1");
    vi.setSystemTime(start + 301 * 1000);
    expect(await keyId(signing(3600))).toBe("AKIA2");
  });

  it("refuses a URL longer than any session could keep alive", async () => {
    const signing = presignRoleSession(roleArn, new STSClient({}));
    await expect(signing(3601)).rejects.toThrow(/at most 3600 s/);
    expect(sts.commandCalls(AssumeRoleCommand)).toHaveLength(0);
  });

  it("tries STS again after a failed AssumeRole", async () => {
    const signing = presignRoleSession(roleArn, new STSClient({}));
    sts.on(AssumeRoleCommand).rejectsOnce(new Error("throttled")).callsFake(issue);
    await expect(signing(1500)).rejects.toThrow(/throttled/);
    expect(await keyId(signing(1500))).toBe("AKIA1");
    expect(sts.commandCalls(AssumeRoleCommand)).toHaveLength(2);
  });
});
