import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { compareBytes } from "../../lambdas/core/snapshot/bbolt/page.js";
import { LiveKeySet } from "../../lambdas/core/snapshot/live-key-set.js";

describe("LiveKeySet", () => {
  it("counts keys alive after a replay of puts and deletes, like a Set of strings", () => {
    const keys = Array.from({ length: 5000 }, (_, index) =>
      Buffer.from(`/registry/pods/ns-${index % 13}/p-${index % 3001}`),
    );
    keys.push(randomBytes(300), Buffer.from("x"), Buffer.alloc(0));
    const set = new LiveKeySet();
    const reference = new Set<string>();
    for (let step = 0; step < 20_000; step++) {
      const key = keys[(step * 7919) % keys.length] as Buffer;
      const page = Buffer.concat([randomBytes(step % 5), key, randomBytes(3)]);
      const start = step % 5;
      if (step % 4 === 3) {
        set.delete(page, start, start + key.length);
        reference.delete(key.toString("latin1"));
      } else {
        set.add(page, start, start + key.length);
        reference.add(key.toString("latin1"));
      }
      expect(set.size).toBe(reference.size);
    }
    for (const key of keys) expect(set.has(key, 0, key.length)).toBe(reference.has(key.toString("latin1")));
    expect(set.distinctKeys).toBeLessThanOrEqual(new Set(keys.map((key) => key.toString("latin1"))).size);
  });

  it("ignores a delete of a key it never saw", () => {
    const set = new LiveKeySet();
    set.delete(Buffer.from("nope"), 0, 4);
    set.add(Buffer.from("a"), 0, 1);
    set.add(Buffer.from("a"), 0, 1);
    expect(set.size).toBe(1);
  });
});

describe("compareBytes", () => {
  it("orders byte ranges as Buffer.compare does", () => {
    const samples = [
      Buffer.alloc(0),
      Buffer.from("a"),
      Buffer.from("ab"),
      Buffer.from("b"),
      Buffer.from([0xff]),
      Buffer.from([0, 1]),
    ];
    for (const a of samples) {
      for (const b of samples) {
        const padded = Buffer.concat([Buffer.from("zz"), b]);
        expect(Math.sign(compareBytes(a, 0, a.length, padded, 2, padded.length))).toBe(Buffer.compare(a, b));
      }
    }
  });
});
