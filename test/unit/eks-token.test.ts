// The EKS token, decoded and checked part by part against what aws-iam-authenticator accepts
// (FACTS.md §6), with the SigV4 signature recomputed here from the specification, independently of the
// signer that made it.
import { createHash, createHmac } from "node:crypto";
import { AssumeRoleCommand, STSClient } from "@aws-sdk/client-sts";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  InvalidInputError,
  KubernetesAccessDeniedError,
  KubernetesApiError,
} from "../../lambdas/core/errors.js";
import {
  type AwsCredentials,
  createAwsCredentialsProvider,
  createEksToken,
  createEksTokenProvider,
  decodeEksToken,
  eksTokenPrefix,
} from "../../lambdas/core/kube/eks-token.js";

const signingDate = new Date("2026-11-24T10:00:00Z");
const staticCredentials: AwsCredentials = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  sessionToken: "FwoGZXIvYXdzEJr//////////wEaDK+session/token==",
};
const fixed = (credentials: AwsCredentials) => async () => credentials;

const allowedParameters = new Set([
  "Action",
  "Version",
  "X-Amz-Algorithm",
  "X-Amz-Credential",
  "X-Amz-Date",
  "X-Amz-Expires",
  "X-Amz-Security-Token",
  "X-Amz-Signature",
  "X-Amz-SignedHeaders",
]);

/** SigV4 from the specification: canonical request, string to sign, derived key, HMAC. */
function expectedSignature(url: URL, clusterName: string, secretAccessKey: string): string {
  const rfc3986 = (value: string) =>
    encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const query = [...url.searchParams.entries()]
    .filter(([name]) => name !== "X-Amz-Signature")
    .map(([name, value]) => `${rfc3986(name)}=${rfc3986(value)}`)
    .sort()
    .join("&");
  const canonicalRequest = [
    "GET",
    "/",
    query,
    `host:${url.host}\nx-k8s-aws-id:${clusterName}\n`,
    "host;x-k8s-aws-id",
    createHash("sha256").update("").digest("hex"),
  ].join("\n");
  const date = url.searchParams.get("X-Amz-Date") as string;
  const [, day, region, service] = (url.searchParams.get("X-Amz-Credential") as string).split("/");
  const scope = `${day}/${region}/${service}/aws4_request`;
  const stringToSign = [
    "AWS4-HMAC-SHA256",
    date,
    scope,
    createHash("sha256").update(canonicalRequest).digest("hex"),
  ].join("\n");
  const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data).digest();
  const signingKey = hmac(
    hmac(hmac(hmac(`AWS4${secretAccessKey}`, day as string), region as string), service as string),
    "aws4_request",
  );
  return createHmac("sha256", signingKey).update(stringToSign).digest("hex");
}

describe("createEksToken", () => {
  it("is k8s-aws-v1. + unpadded base64url of a presigned STS GetCallerIdentity URL that passes the authenticator's checks", async () => {
    const { token, expiresAt, signedAt } = await createEksToken({
      clusterName: "prod-cluster",
      region: "eu-west-1",
      credentials: fixed(staticCredentials),
      signingDate,
    });
    expect(token.startsWith(eksTokenPrefix)).toBe(true);
    const encoded = token.slice(eksTokenPrefix.length);
    expect(encoded).toMatch(/^[A-Za-z0-9_-]+$/); // base64url alphabet, and no "=" padding
    expect(token.length).toBeLessThanOrEqual(4096);

    const url = decodeEksToken(token);
    expect(url.protocol).toBe("https:");
    expect(url.host).toBe("sts.eu-west-1.amazonaws.com");
    expect(url.pathname).toBe("/");
    expect(url.hash).toBe("");
    const names = [...url.searchParams.keys()];
    expect(new Set(names).size).toBe(names.length); // no duplicates
    for (const name of names) expect(allowedParameters.has(name), name).toBe(true);
    expect(Object.fromEntries(url.searchParams)).toEqual({
      Action: "GetCallerIdentity",
      Version: "2011-06-15",
      "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
      "X-Amz-Credential": "AKIDEXAMPLE/20261124/eu-west-1/sts/aws4_request",
      "X-Amz-Date": "20261124T100000Z",
      "X-Amz-Expires": "60",
      "X-Amz-Security-Token": staticCredentials.sessionToken,
      "X-Amz-SignedHeaders": "host;x-k8s-aws-id",
      "X-Amz-Signature": expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(url.searchParams.get("X-Amz-Signature")).toBe(
      expectedSignature(url, "prod-cluster", staticCredentials.secretAccessKey),
    );
    expect(signedAt).toEqual(signingDate);
    expect(expiresAt).toEqual(new Date("2026-11-24T10:15:00Z"));
  });

  it("is deterministic for a fixed signing date, and binds the cluster name through the signed header", async () => {
    const make = (clusterName: string) =>
      createEksToken({
        clusterName,
        region: "eu-west-1",
        credentials: fixed(staticCredentials),
        signingDate,
      });
    const [first, second, other] = await Promise.all([make("prod"), make("prod"), make("staging")]);
    expect(second.token).toBe(first.token);
    const signature = (token: string) => decodeEksToken(token).searchParams.get("X-Amz-Signature");
    expect(signature(other.token)).not.toBe(signature(first.token));
    // Everything but the signature is the same: only the signed x-k8s-aws-id header differs.
    const unsigned = (token: string) => {
      const url = decodeEksToken(token);
      url.searchParams.delete("X-Amz-Signature");
      return url.toString();
    };
    expect(unsigned(other.token)).toBe(unsigned(first.token));
  });

  it("has no X-Amz-Security-Token for long-term credentials, and ends with the credentials when they expire first", async () => {
    const { token, expiresAt } = await createEksToken({
      clusterName: "prod",
      region: "us-east-1",
      credentials: fixed({
        accessKeyId: "AKIDEXAMPLE",
        secretAccessKey: "secret",
        expiration: new Date("2026-11-24T10:05:00Z"),
      }),
      signingDate,
    });
    const url = decodeEksToken(token);
    expect(url.searchParams.has("X-Amz-Security-Token")).toBe(false);
    expect(url.host).toBe("sts.us-east-1.amazonaws.com");
    expect(url.searchParams.get("X-Amz-Signature")).toBe(expectedSignature(url, "prod", "secret"));
    expect(expiresAt).toEqual(new Date("2026-11-24T10:05:00Z"));
  });

  it("uses the China partition's STS host in cn- regions", async () => {
    const { token } = await createEksToken({
      clusterName: "prod",
      region: "cn-north-1",
      credentials: fixed(staticCredentials),
      signingDate,
    });
    expect(decodeEksToken(token).host).toBe("sts.cn-north-1.amazonaws.com.cn");
  });

  it("refuses a malformed region", async () => {
    await expect(
      createEksToken({ clusterName: "prod", region: "eu west", credentials: fixed(staticCredentials) }),
    ).rejects.toThrow(InvalidInputError);
  });
});

describe("createEksTokenProvider", () => {
  it("reuses a token until it is maxAge old, then signs a new one dated now", async () => {
    let now = signingDate.getTime();
    let signed = 0;
    const provider = createEksTokenProvider({
      clusterName: "prod",
      region: "eu-west-1",
      credentials: async () => {
        signed++;
        return staticCredentials;
      },
      now: () => new Date(now),
    });
    const first = await provider.getToken();
    now += 9 * 60 * 1000;
    expect(await provider.getToken()).toBe(first);
    now += 61 * 1000; // past the default 10 minutes, well before the authenticator's 15
    const second = await provider.getToken();
    expect(second).not.toBe(first);
    expect(signed).toBe(2);
    expect(decodeEksToken(second).searchParams.get("X-Amz-Date")).toBe("20261124T101001Z");
  });

  it("signs again a minute before the credentials behind the token expire", async () => {
    let now = signingDate.getTime();
    const provider = createEksTokenProvider({
      clusterName: "prod",
      region: "eu-west-1",
      credentials: async () => ({
        ...staticCredentials,
        expiration: new Date(now + 3 * 60 * 1000),
      }),
      now: () => new Date(now),
    });
    const first = await provider.getToken();
    now += 60 * 1000;
    expect(await provider.getToken()).toBe(first);
    now += 61 * 1000;
    expect(await provider.getToken()).not.toBe(first);
  });

  it("shares one signing between concurrent callers", async () => {
    let signed = 0;
    const provider = createEksTokenProvider({
      clusterName: "prod",
      region: "eu-west-1",
      credentials: async () => {
        signed++;
        return staticCredentials;
      },
    });
    const tokens = await Promise.all([provider.getToken(), provider.getToken(), provider.getToken()]);
    expect(new Set(tokens).size).toBe(1);
    expect(signed).toBe(1);
  });

  it("refuses to keep tokens 14 minutes or longer", () => {
    expect(() =>
      createEksTokenProvider({
        clusterName: "prod",
        region: "eu-west-1",
        credentials: fixed(staticCredentials),
        maxAgeMs: 14 * 60 * 1000,
      }),
    ).toThrow(InvalidInputError);
  });
});

describe("createAwsCredentialsProvider with a role", () => {
  const sts = mockClient(STSClient);
  afterEach(() => sts.reset());
  afterAll(() => sts.restore());
  const roleArn = "arn:aws:iam::123456789012:role/etcd-backup";

  it("assumes the role once, signs the token with the role's credentials, and renews them before they expire", async () => {
    sts.on(AssumeRoleCommand, { RoleArn: roleArn }).resolves({
      Credentials: {
        AccessKeyId: "ASIAROLE",
        SecretAccessKey: "role-secret",
        SessionToken: "role-session",
        Expiration: new Date(Date.now() + 60 * 60 * 1000),
      },
    });
    const credentials = createAwsCredentialsProvider({
      region: "eu-west-1",
      roleArn,
      sourceCredentials: fixed(staticCredentials),
    });
    const { token } = await createEksToken({
      clusterName: "prod",
      region: "eu-west-1",
      credentials,
      signingDate,
    });
    await credentials();
    const url = decodeEksToken(token);
    expect(url.searchParams.get("X-Amz-Credential")).toBe("ASIAROLE/20261124/eu-west-1/sts/aws4_request");
    expect(url.searchParams.get("X-Amz-Security-Token")).toBe("role-session");
    expect(url.searchParams.get("X-Amz-Signature")).toBe(expectedSignature(url, "prod", "role-secret"));
    expect(sts.commandCalls(AssumeRoleCommand)).toHaveLength(1);
    expect(sts.commandCalls(AssumeRoleCommand)[0]?.args[0].input).toMatchObject({
      RoleArn: roleArn,
      RoleSessionName: "etcd-backup",
    });

    // Credentials within five minutes of expiry are renewed.
    sts.on(AssumeRoleCommand).resolves({
      Credentials: {
        AccessKeyId: "ASIASOON",
        SecretAccessKey: "s",
        SessionToken: "t",
        Expiration: new Date(Date.now() + 4 * 60 * 1000),
      },
    });
    const renewing = createAwsCredentialsProvider({
      region: "eu-west-1",
      roleArn,
      sourceCredentials: fixed(staticCredentials),
    });
    await renewing();
    await renewing();
    expect(sts.commandCalls(AssumeRoleCommand)).toHaveLength(3);
  });

  it("reports a refused AssumeRole as access denied, and a throttled one as transient", async () => {
    sts.on(AssumeRoleCommand).rejects(
      Object.assign(new Error("User is not authorized to perform: sts:AssumeRole"), {
        name: "AccessDenied",
        $metadata: { httpStatusCode: 403 },
      }),
    );
    const denied = createAwsCredentialsProvider({
      region: "eu-west-1",
      roleArn,
      sourceCredentials: fixed(staticCredentials),
    });
    await expect(denied()).rejects.toThrow(KubernetesAccessDeniedError);
    await expect(denied()).rejects.toThrow(/cannot assume role arn:aws:iam::123456789012:role\/etcd-backup/);

    sts.reset();
    sts
      .on(AssumeRoleCommand)
      .rejects(
        Object.assign(new Error("Rate exceeded"), { name: "Throttling", $metadata: { httpStatusCode: 400 } }),
      );
    const throttled = createAwsCredentialsProvider({
      region: "eu-west-1",
      roleArn,
      sourceCredentials: fixed(staticCredentials),
    });
    await expect(throttled()).rejects.toThrow(KubernetesApiError);
  });
});
