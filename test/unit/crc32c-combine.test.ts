import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { crc32cPortable } from "../../lambdas/core/checksum/crc32c.js";
import { crc32cCombine } from "../../lambdas/core/checksum/crc32c-combine.js";

describe("crc32cCombine", () => {
  it("gives the CRC of the concatenation, for lengths 0 to 5000 bytes on either side", () => {
    for (const [lengthA, lengthB] of [
      [0, 0],
      [0, 7],
      [9, 0],
      [1, 1],
      [3, 64],
      [4096, 513],
      [5000, 4999],
    ] as const) {
      const a = randomBytes(lengthA);
      const b = randomBytes(lengthB);
      const whole = crc32cPortable(Buffer.concat([a, b]), 0);
      expect(crc32cCombine(crc32cPortable(a, 0), crc32cPortable(b, 0), lengthB)).toBe(whole);
    }
  });

  it("joins many pieces in order, as the key-history hash does", () => {
    const pieces = Array.from({ length: 200 }, (_, index) => randomBytes((index * 37) % 300));
    let joined = crc32cPortable(Buffer.from("key"), 0);
    for (const piece of pieces) joined = crc32cCombine(joined, crc32cPortable(piece, 0), piece.length);
    expect(joined).toBe(crc32cPortable(Buffer.concat([Buffer.from("key"), ...pieces]), 0));
  });

  it("shifts by lengths of 4 GiB and more without truncating them to 32 bits", () => {
    const crcA = crc32cPortable(Buffer.from("prefix"), 0);
    // Shifting past 2^31 zero bytes twice is shifting past 2^32 once (crc(B) = 0 adds nothing).
    const twice = crc32cCombine(crc32cCombine(crcA, 0, 2 ** 31), 0, 2 ** 31);
    expect(crc32cCombine(crcA, 0, 2 ** 32)).toBe(twice);
    expect(twice).not.toBe(crcA);
    expect(crc32cCombine(crcA, 0, 2 ** 32 + 3)).toBe(crc32cCombine(twice, 0, 3));
  });
});
