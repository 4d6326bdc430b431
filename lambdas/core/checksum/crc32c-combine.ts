// Joins two CRC-32C values: the CRC of A‖B from crc(A), crc(B) and B's length, without A's or B's bytes.
// The key-history hash (snapshot/key-history-hash.ts) needs it because whether an early revision counts
// is known only once the whole bucket has been read, when the bytes are long gone. Polynomial arithmetic
// modulo the reflected Castagnoli polynomial, as zlib's crc32_combine does for its own polynomial.
const reflectedPolynomial = 0x82f63b78;
/** x^0 in the reflected representation. */
const one = 0x80000000;

/** a × b modulo the polynomial. */
function multiplyModPolynomial(a: number, b: number): number {
  let product = 0;
  let multiplier = b;
  for (let bit = one; bit !== 0; bit >>>= 1) {
    if ((a & bit) !== 0) product ^= multiplier;
    multiplier = multiplier & 1 ? (multiplier >>> 1) ^ reflectedPolynomial : multiplier >>> 1;
  }
  return product >>> 0;
}

/** x^(8 · 2^k) modulo the polynomial for k = 0…63: appending 2^k zero bytes. */
const zeroBytePowers = (() => {
  const powers = new Uint32Array(64);
  // x^8, one zero byte: x^1 is 0x40000000 reflected, squared three times.
  let power = 0x40000000;
  for (let square = 0; square < 3; square++) power = multiplyModPolynomial(power, power);
  for (let k = 0; k < 64; k++) {
    powers[k] = power;
    power = multiplyModPolynomial(power, power);
  }
  return powers;
})();

/**
 * crc(A) carried past `length` more bytes: crc(A‖B) = crc32cShift(crc(A), |B|) ⊕ crc(B), whatever B holds.
 */
export function crc32cShift(crc: number, length: number): number {
  let shifted = crc >>> 0;
  let remaining = length;
  for (let k = 0; remaining > 0; k++) {
    // Lengths above 2^32 are split with division, not bit operators (which truncate to 32 bits).
    if (remaining % 2 === 1) shifted = multiplyModPolynomial(zeroBytePowers[k] as number, shifted);
    remaining = Math.floor(remaining / 2);
  }
  return shifted;
}

/** CRC-32C of A‖B, given crc(A), crc(B) and B's length in bytes. */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  return (crc32cShift(crcA, lengthB) ^ crcB) >>> 0;
}
