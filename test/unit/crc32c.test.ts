import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  crc32c,
  crc32cImplementation,
  crc32cPortable,
  crc32cToBase64,
} from "../../lambdas/core/checksum/crc32c.js";

describe("crc32c", () => {
  it("matches the standard check value of CRC-32C for '123456789'", () => {
    expect(crc32c(Buffer.from("123456789"), 0)).toBe(0xe3069283);
    expect(crc32cPortable(Buffer.from("123456789"), 0)).toBe(0xe3069283);
  });

  it("loads the native implementation on this machine, so that the comparisons below are not portable with portable", () => {
    expect(crc32cImplementation).toBe("native");
    expect(crc32c).not.toBe(crc32cPortable);
  });

  it("gives the same result in one call, in pieces, natively and portably", () => {
    const data = randomBytes(100_003);
    const whole = crc32c(data, 0);
    let pieces = 0;
    for (let offset = 0; offset < data.length; offset += 777) {
      pieces = crc32cPortable(data.subarray(offset, offset + 777), pieces);
    }
    expect(pieces).toBe(whole);
    expect(crc32cPortable(data, 0)).toBe(whole);
    // The native function continues from a previous value too: the snapshot hash (verify-snapshot) relies on it.
    let nativePieces = 0;
    for (let offset = 0; offset < data.length; offset += 777) {
      nativePieces = crc32c(data.subarray(offset, offset + 777), nativePieces);
    }
    expect(nativePieces).toBe(whole);
  });

  it("encodes the checksum as S3 expects: base64 of the big-endian value", () => {
    expect(crc32cToBase64(0xe3069283)).toBe(Buffer.from([0xe3, 0x06, 0x92, 0x83]).toString("base64"));
  });
});
