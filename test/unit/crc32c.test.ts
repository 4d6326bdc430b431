import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { crc32c, crc32cPortable, crc32cToBase64 } from "../../lambdas/core/checksum/crc32c.js";

describe("crc32c", () => {
  it("matches the standard check value of CRC-32C for '123456789'", () => {
    expect(crc32c(Buffer.from("123456789"), 0)).toBe(0xe3069283);
    expect(crc32cPortable(Buffer.from("123456789"), 0)).toBe(0xe3069283);
  });

  it("gives the same result in one call, in pieces, natively and portably", () => {
    const data = randomBytes(100_003);
    const whole = crc32c(data, 0);
    let pieces = 0;
    for (let offset = 0; offset < data.length; offset += 777) {
      pieces = crc32cPortable(data.subarray(offset, offset + 777), pieces);
    }
    expect(pieces).toBe(whole);
  });

  it("encodes the checksum as S3 expects: base64 of the big-endian value", () => {
    expect(crc32cToBase64(0xe3069283)).toBe(Buffer.from([0xe3, 0x06, 0x92, 0x83]).toString("base64"));
  });
});
