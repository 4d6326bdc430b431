// Presigned S3 URLs, checked against the worked example in Amazon S3's SigV4 documentation
// ("Authenticating Requests: Using Query Parameters"), whose signature is published.
import { createHash, createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { presignS3Url } from "../../lambdas/core/store/presign.js";

const documentationExample = {
  bucket: "examplebucket",
  key: "test.txt",
  method: "GET" as const,
  expiresInSeconds: 86_400,
  region: "us-east-1",
  credentials: {
    accessKeyId: "AKIAIOSFODNN7EXAMPLE",
    secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
  },
  endpoint: "https://s3.amazonaws.com",
  forcePathStyle: false,
  signingDate: new Date("2013-05-24T00:00:00Z"),
};

describe("presignS3Url", () => {
  it("reproduces the signature of the S3 documentation's presigned GET example", async () => {
    const url = new URL(await presignS3Url(documentationExample));
    expect(url.origin).toBe("https://examplebucket.s3.amazonaws.com");
    expect(url.pathname).toBe("/test.txt");
    expect(Object.fromEntries(url.searchParams)).toEqual({
      "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
      "X-Amz-Credential": "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
      "X-Amz-Date": "20130524T000000Z",
      "X-Amz-Expires": "86400",
      "X-Amz-SignedHeaders": "host",
      "X-Amz-Signature": "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
    });
  });

  it("signs a different URL for PUT than for GET", async () => {
    const get = new URL(await presignS3Url(documentationExample));
    const put = new URL(await presignS3Url({ ...documentationExample, method: "PUT" }));
    expect(put.searchParams.get("X-Amz-Signature")).not.toBe(get.searchParams.get("X-Amz-Signature"));
  });

  it("addresses a local endpoint by path, keeps its port and escapes each key segment once", async () => {
    const url = await presignS3Url({
      ...documentationExample,
      endpoint: "http://127.0.0.1:4568",
      forcePathStyle: undefined,
      key: "restores/r 1/cp-1+(a)/status.json",
    });
    expect(
      url.startsWith("http://127.0.0.1:4568/examplebucket/restores/r%201/cp-1%2B%28a%29/status.json?"),
    ).toBe(true);
  });

  it("uses the regional virtual-hosted endpoint on AWS and carries a role session's token", async () => {
    const url = new URL(
      await presignS3Url({
        ...documentationExample,
        endpoint: undefined,
        forcePathStyle: undefined,
        region: "eu-west-1",
        credentials: { ...documentationExample.credentials, sessionToken: "session/token+=" },
      }),
    );
    expect(url.host).toBe("examplebucket.s3.eu-west-1.amazonaws.com");
    expect(url.searchParams.get("X-Amz-Security-Token")).toBe("session/token+=");
  });

  it.each([0, 604_801, 1.5])("refuses an expiry of %s seconds", async (expiresInSeconds) => {
    await expect(presignS3Url({ ...documentationExample, expiresInSeconds })).rejects.toThrow(/expire/);
  });
});

/** SigV4 query-string signing written out from the S3 documentation, independent of the code under test. */
function documentedSignature(url: URL, secretAccessKey: string, region: string): string {
  const hmac = (key: Buffer | string, data: string) => createHmac("sha256", key).update(data).digest();
  const encode = (value: string) =>
    encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const query = [...url.searchParams]
    .filter(([name]) => name !== "X-Amz-Signature")
    .map(([name, value]) => `${encode(name)}=${encode(value)}`)
    .sort()
    .join("&");
  const canonicalRequest = [
    "GET",
    url.pathname,
    query,
    `host:${url.host}\n`,
    "host",
    "UNSIGNED-PAYLOAD",
  ].join("\n");
  const date = url.searchParams.get("X-Amz-Date") as string;
  const scope = `${date.slice(0, 8)}/${region}/s3/aws4_request`;
  const stringToSign = [
    "AWS4-HMAC-SHA256",
    date,
    scope,
    createHash("sha256").update(canonicalRequest).digest("hex"),
  ].join("\n");
  let key = hmac(`AWS4${secretAccessKey}`, date.slice(0, 8));
  for (const part of [region, "s3", "aws4_request"]) key = hmac(key, part);
  return createHmac("sha256", key).update(stringToSign).digest("hex");
}

describe("presignS3Url with a versionId", () => {
  const versionId = "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo";

  it("pins the object version in a signed versionId query parameter", async () => {
    const url = new URL(await presignS3Url({ ...documentationExample, versionId }));
    expect(url.searchParams.get("versionId")).toBe(versionId);
    expect(url.searchParams.get("X-Amz-Signature")).toBe(
      documentedSignature(url, documentationExample.credentials.secretAccessKey, "us-east-1"),
    );
  });

  it("signs differently from the unversioned URL, so the version cannot be swapped or dropped", async () => {
    const unversioned = new URL(await presignS3Url(documentationExample));
    const versioned = new URL(await presignS3Url({ ...documentationExample, versionId }));
    // The helper reproduces the documentation's published signature, so it can judge the versioned one.
    expect(
      documentedSignature(unversioned, documentationExample.credentials.secretAccessKey, "us-east-1"),
    ).toBe("aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    expect(versioned.searchParams.get("X-Amz-Signature")).not.toBe(
      unversioned.searchParams.get("X-Amz-Signature"),
    );
    const swapped = new URL(versioned);
    swapped.searchParams.set("versionId", "another-version");
    expect(versioned.searchParams.get("X-Amz-Signature")).not.toBe(
      documentedSignature(swapped, documentationExample.credentials.secretAccessKey, "us-east-1"),
    );

    // S3 checks a URL by signing what it receives and comparing with X-Amz-Signature. The signature in
    // the versioned URL passes that check as sent...
    const signature = versioned.searchParams.get("X-Amz-Signature");
    const verify = (url: URL) =>
      documentedSignature(url, documentationExample.credentials.secretAccessKey, "us-east-1") === signature;
    expect(verify(versioned)).toBe(true);
    // ...and fails it with the version swapped or dropped, the rest of the URL (signature included) kept.
    const dropped = new URL(versioned);
    dropped.searchParams.delete("versionId");
    expect(dropped.searchParams.get("X-Amz-Signature")).toBe(signature);
    expect(verify(swapped)).toBe(false);
    expect(verify(dropped)).toBe(false);
    // The code under test agrees on what those URLs would need: its own signatures for the other version
    // and for none, which the same check accepts for them, are not the one the versioned URL carries.
    const signedForOther = new URL(
      await presignS3Url({ ...documentationExample, versionId: "another-version" }),
    );
    expect(signedForOther.searchParams.get("versionId")).toBe("another-version");
    const needed = {
      swapped: signedForOther.searchParams.get("X-Amz-Signature"),
      dropped: unversioned.searchParams.get("X-Amz-Signature"),
    };
    expect(needed.swapped).toBe(
      documentedSignature(swapped, documentationExample.credentials.secretAccessKey, "us-east-1"),
    );
    expect(needed.dropped).toBe(
      documentedSignature(dropped, documentationExample.credentials.secretAccessKey, "us-east-1"),
    );
    expect(needed.swapped).not.toBe(signature);
    expect(needed.dropped).not.toBe(signature);
  });

  it("refuses an empty versionId rather than signing the current version", async () => {
    await expect(presignS3Url({ ...documentationExample, versionId: "" })).rejects.toThrow(/versionId/);
  });
});
