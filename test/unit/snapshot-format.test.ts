import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { hasTrailerSize, TrailerHoldingHash } from "../../lambdas/core/snapshot/snapshot-format.js";

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest();

function hashInChunks(bytes: Buffer, sizes: number[]): TrailerHoldingHash {
  const hash = new TrailerHoldingHash();
  let offset = 0;
  for (let index = 0; offset < bytes.length; index++) {
    const size = sizes[index % sizes.length] as number;
    hash.update(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return hash;
}

describe("TrailerHoldingHash", () => {
  // Chunks smaller than, equal to and larger than the trailer, so that every branch meets every other.
  for (const sizes of [[1], [7, 40, 3], [32], [31, 33], [4096], [1000, 1, 1, 1]]) {
    it(`holds back the last 32 bytes whatever the chunks (${sizes.join(",")})`, () => {
      const bytes = randomBytes(2048 + 32);
      const hash = hashInChunks(bytes, sizes);
      expect(hash.heldBytes.equals(bytes.subarray(-32))).toBe(true);
      expect(hash.digestWithoutHeld().equals(sha256(bytes.subarray(0, -32)))).toBe(true);
    });
  }

  it("hashes everything for a stream without a trailer, even one shorter than 32 bytes", () => {
    for (const length of [0, 5, 32, 100]) {
      const bytes = randomBytes(length);
      expect(hashInChunks(bytes, [3]).digestAll().equals(sha256(bytes))).toBe(true);
    }
  });

  it("knows a snapshot's size: whole 512-byte pages plus the 32-byte trailer", () => {
    expect([544, 32, 4096 + 32].map(hasTrailerSize)).toEqual([true, true, true]);
    expect([0, 512, 543, 545].map(hasTrailerSize)).toEqual([false, false, false, false]);
  });
});
