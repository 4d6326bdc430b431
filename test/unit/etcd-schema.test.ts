import { describe, expect, it } from "vitest";
import {
  encodeRevisionKey,
  findKeyValueKey,
  isTombstoneKey,
  parseRevisionKey,
} from "../../lambdas/core/snapshot/etcd-schema.js";
import { encodeKeyValue } from "../support/bbolt-builder.js";

const parse = (key: Buffer) => parseRevisionKey(key, 0, key.length);

describe("revision keys", () => {
  it("reads main and sub revisions, big-endian around '_'", () => {
    const key = Buffer.from("00000000000001c25f0000000000000003", "hex");
    expect(parse(key)).toEqual({ main: 450, sub: 3, tombstone: false });
    expect(encodeRevisionKey(450, 3)).toEqual(key);
  });

  it("recognises a tombstone by its 18th byte 't'", () => {
    const key = encodeRevisionKey(9, 0, true);
    expect(key.length).toBe(18);
    expect(parse(key)).toEqual({ main: 9, sub: 0, tombstone: true });
    expect(isTombstoneKey(key, 0, key.length)).toBe(true);
    expect(isTombstoneKey(encodeRevisionKey(9, 0), 0, 17)).toBe(false);
  });

  it("rejects other lengths, a missing separator, another 18th byte and negative revisions", () => {
    expect(parse(Buffer.alloc(16))).toBeUndefined();
    expect(parse(Buffer.alloc(19))).toBeUndefined();
    const noSeparator = encodeRevisionKey(1, 0);
    noSeparator[8] = 0x2d;
    expect(parse(noSeparator)).toBeUndefined();
    const wrongMark = encodeRevisionKey(1, 0, true);
    wrongMark[17] = 0x78;
    expect(parse(wrongMark)).toBeUndefined();
    expect(parse(encodeRevisionKey(-1, 0))).toBeUndefined();
    expect(parse(encodeRevisionKey(1, -5))).toBeUndefined();
  });

  it("sorts revision keys by bytes in revision order", () => {
    const keys = [encodeRevisionKey(256, 0), encodeRevisionKey(2, 7), encodeRevisionKey(2, 1, true)];
    const sorted = [...keys].sort(Buffer.compare).map(parse);
    expect(sorted.map((revision) => [revision?.main, revision?.sub])).toEqual([
      [2, 1],
      [2, 7],
      [256, 0],
    ]);
  });
});

describe("mvccpb.KeyValue", () => {
  const keyOf = (message: Buffer) => {
    const range = findKeyValueKey(message, 0, message.length);
    return range && message.toString("latin1", range[0], range[1]);
  };

  it("finds the user key of a put and of a tombstone", () => {
    expect(
      keyOf(
        encodeKeyValue({
          key: "/registry/pods/a",
          createRevision: 5,
          modRevision: 300,
          version: 2,
          value: "x",
        }),
      ),
    ).toBe("/registry/pods/a");
    expect(keyOf(encodeKeyValue({ key: "gone" }))).toBe("gone");
  });

  it("finds the key wherever the field sits, skipping varint, fixed and length-delimited fields", () => {
    const message = Buffer.concat([
      Buffer.from([0x10, 0xac, 0x02]), // field 2 varint 300
      Buffer.from([0x39, 1, 2, 3, 4, 5, 6, 7, 8]), // field 7, 64-bit
      Buffer.from([0x45, 1, 2, 3, 4]), // field 8, 32-bit
      Buffer.from([0x2a, 2, 0x68, 0x69]), // field 5 "hi"
      Buffer.from([0x0a, 3, 0x6b, 0x65, 0x79]), // field 1 "key"
    ]);
    expect(keyOf(message)).toBe("key");
  });

  it("gives undefined for a truncated message, a missing key or a bad wire type", () => {
    expect(keyOf(Buffer.from([0x0a, 5, 0x61]))).toBeUndefined();
    expect(keyOf(Buffer.from([0x10, 0x01]))).toBeUndefined();
    expect(keyOf(Buffer.from([0x0b, 0x01]))).toBeUndefined();
    expect(keyOf(Buffer.from([0x10, 0xff]))).toBeUndefined();
  });
});
