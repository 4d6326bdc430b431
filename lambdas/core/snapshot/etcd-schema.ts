// The parts of etcd's storage schema the verifier reads (FACTS §3): bucket names, revision keys of the
// `key` bucket, and just enough of mvccpb.KeyValue to find the user key.

export const EtcdBuckets = {
  key: "key",
  meta: "meta",
  lease: "lease",
  alarm: "alarm",
  cluster: "cluster",
  members: "members",
  membersRemoved: "members_removed",
  auth: "auth",
  authUsers: "authUsers",
  authRoles: "authRoles",
} as const;

/** Keys of the `meta` bucket the report uses. */
export const MetaKeys = {
  storageVersion: "storageVersion",
  finishedCompactRevision: "finishedCompactRev",
  scheduledCompactRevision: "scheduledCompactRev",
} as const;

export const revisionKeyBytes = 17;
export const tombstoneKeyBytes = 18;
const separator = 0x5f; // '_'
const tombstoneMark = 0x74; // 't'

export interface Revision {
  main: number;
  sub: number;
  tombstone: boolean;
}

/** Parses the revision key at [start, end) of `buffer`; undefined when it is not one. */
export function parseRevisionKey(buffer: Buffer, start: number, end: number): Revision | undefined {
  const main = mainRevisionOf(buffer, start, end);
  if (main < 0) return undefined;
  return {
    main,
    sub: readNonNegativeInt64BE(buffer, start + 9),
    tombstone: end - start === tombstoneKeyBytes,
  };
}

/** The main revision of the revision key at [start, end), or -1 when it is not a revision key. */
export function mainRevisionOf(buffer: Buffer, start: number, end: number): number {
  const length = end - start;
  if (length !== revisionKeyBytes && length !== tombstoneKeyBytes) return -1;
  if (buffer[start + 8] !== separator) return -1;
  if (length === tombstoneKeyBytes && buffer[start + 17] !== tombstoneMark) return -1;
  const main = readNonNegativeInt64BE(buffer, start);
  return readNonNegativeInt64BE(buffer, start + 9) < 0 ? -1 : main;
}

export function isTombstoneKey(buffer: Buffer, start: number, end: number): boolean {
  return end - start === tombstoneKeyBytes && buffer[start + 17] === tombstoneMark;
}

/** The 17-byte revision key etcd writes for (main, sub), with an 18th byte 't' for a tombstone. */
export function encodeRevisionKey(main: number, sub: number, tombstone = false): Buffer {
  const key = Buffer.alloc(tombstone ? tombstoneKeyBytes : revisionKeyBytes);
  key.writeBigInt64BE(BigInt(main), 0);
  key[8] = separator;
  key.writeBigInt64BE(BigInt(sub), 9);
  if (tombstone) key[17] = tombstoneMark;
  return key;
}

/** A big-endian int64 as a number; -1 when negative or beyond 2^53. */
function readNonNegativeInt64BE(buffer: Buffer, offset: number): number {
  const high = buffer.readUInt32BE(offset);
  if (high > 0x1fffff) return -1;
  return high * 2 ** 32 + buffer.readUInt32BE(offset + 4);
}

/**
 * The [start, end) of field 1 (`key`) of the mvccpb.KeyValue encoded at [start, end) of `buffer`,
 * or undefined when the bytes are not a well-formed message with a key.
 */
export function findKeyValueKey(buffer: Buffer, start: number, end: number): [number, number] | undefined {
  let offset = start;
  while (offset < end) {
    const tag = readVarint(buffer, offset, end);
    if (tag === undefined) return undefined;
    offset = tag.next;
    const field = Math.floor(tag.value / 8);
    const wireType = tag.value % 8;
    if (field === 0) return undefined;
    switch (wireType) {
      case 0: {
        const skipped = readVarint(buffer, offset, end);
        if (skipped === undefined) return undefined;
        offset = skipped.next;
        break;
      }
      case 1:
        offset += 8;
        break;
      case 5:
        offset += 4;
        break;
      case 2: {
        const length = readVarint(buffer, offset, end);
        if (length === undefined || length.next + length.value > end) return undefined;
        if (field === 1) return [length.next, length.next + length.value];
        offset = length.next + length.value;
        break;
      }
      default:
        return undefined;
    }
  }
  return undefined;
}

function readVarint(
  buffer: Buffer,
  offset: number,
  end: number,
): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let index = offset; index < end && index < offset + 10; index++) {
    const byte = buffer[index] as number;
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if (byte < 0x80) return { value, next: index + 1 };
  }
  return undefined;
}

/**
 * Writes the [start, end) of the user key of the KeyValue at [start, end) into `range`; false when the
 * bytes hold none. etcd writes the key first, so the common case needs no general parse.
 */
export function locateUserKey(buffer: Buffer, start: number, end: number, range: Int32Array): boolean {
  if (buffer[start] === 0x0a) {
    const length = buffer[start + 1] as number;
    if (length < 0x80 && start + 2 + length <= end) {
      range[0] = start + 2;
      range[1] = start + 2 + length;
      return true;
    }
  }
  const found = findKeyValueKey(buffer, start, end);
  if (found === undefined) return false;
  range[0] = found[0];
  range[1] = found[1];
  return true;
}
