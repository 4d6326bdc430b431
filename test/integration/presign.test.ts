// Presigned URLs against s3rver, as the restore agents use them: curl-like requests with no credentials
// of their own. s3rver checks a presigned URL's expiry (not its signature, which the unit test proves).
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { presignWithClient } from "../../lambdas/core/store/presign.js";
import { type LocalS3, startLocalS3 } from "../support/s3-server.js";

describe("presigned URLs on s3rver", () => {
  let s3: LocalS3;
  beforeAll(async () => {
    s3 = await startLocalS3();
  });
  afterAll(async () => {
    await s3?.stop();
  });

  const presign = (
    key: string,
    method: "GET" | "PUT",
    options: { expiresInSeconds?: number; signingDate?: Date } = {},
  ) =>
    presignWithClient(s3.client, {
      bucket: s3.bucket,
      key,
      method,
      endpoint: s3.endpoint,
      expiresInSeconds: options.expiresInSeconds ?? 600,
      ...(options.signingDate ? { signingDate: options.signingDate } : {}),
    });

  it("reads an object through a presigned GET", async () => {
    await s3.client.send(
      new PutObjectCommand({ Bucket: s3.bucket, Key: "plans/a b/plan", Body: "format=1\n" }),
    );
    const response = await fetch(await presign("plans/a b/plan", "GET"));
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("format=1\n");
  });

  it("writes an object through a presigned PUT", async () => {
    const response = await fetch(await presign("status/cp-1.json", "PUT"), {
      method: "PUT",
      body: '{"state":"done"}',
      headers: { "content-type": "application/json" },
    });
    expect(response.status).toBe(200);
    const stored = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: "status/cp-1.json" }));
    expect(await stored.Body?.transformToString()).toBe('{"state":"done"}');
  });

  it("refuses a presigned URL that has expired", async () => {
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: "old", Body: "x" }));
    const url = await presign("old", "GET", {
      expiresInSeconds: 60,
      signingDate: new Date(Date.now() - 3_600_000),
    });
    const response = await fetch(url);
    expect(response.status).toBe(403);
    expect(await response.text()).toContain("AccessDenied");
  });
});
