import { describe, expect, it } from "vitest";
import { ErrorNames } from "../../lambdas/core/errors.js";
import { isRefusedByS3, storageError } from "../../lambdas/core/store/s3-errors.js";

const s3Error = (name: string, status: number) =>
  Object.assign(new Error(`${name} from S3`), { name, $metadata: { httpStatusCode: status } });

describe("S3 failures", () => {
  it.each([
    ["AccessDenied", 403],
    ["NoSuchBucket", 404],
    ["KMS.DisabledException", 400],
    ["InvalidAccessKeyId", 403],
    ["SomethingNew", 403],
  ])("treats %s (%i) as a refusal no retry can fix", (name, status) => {
    expect(isRefusedByS3(s3Error(name, status))).toBe(true);
    expect(storageError("UploadPart 3 failed", s3Error(name, status)).name).toBe(
      ErrorNames.StorageAccessDenied,
    );
  });

  it.each([
    ["SlowDown", 503],
    ["InternalError", 500],
    ["RequestTimeout", 400],
    ["NoSuchUpload", 404],
  ])("treats %s (%i) as transient", (name, status) => {
    expect(isRefusedByS3(s3Error(name, status))).toBe(false);
    expect(storageError("UploadPart 3 failed", s3Error(name, status)).name).toBe(
      ErrorNames.StorageUnavailable,
    );
  });

  it("treats a dropped connection as transient", () => {
    const reset = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
    expect(storageError("GetObject failed", reset)).toMatchObject({
      name: ErrorNames.StorageUnavailable,
      message: "GetObject failed: Error: socket hang up",
    });
  });
});
