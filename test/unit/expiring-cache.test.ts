import { describe, expect, it } from "vitest";
import { ExpiringCache } from "../../lambdas/handlers/shared/expiring-cache.js";

describe("ExpiringCache", () => {
  it("keeps a value for its time, then loads it again; forgets a failure at once", async () => {
    let now = 0;
    let loads = 0;
    const cache = new ExpiringCache<number>(1000, () => now);
    const load = () => Promise.resolve(++loads);
    expect(await cache.get("k", load)).toBe(1);
    now = 999;
    expect(await cache.get("k", load)).toBe(1);
    now = 1000;
    expect(await cache.get("k", load)).toBe(2);
    await expect(cache.get("failing", () => Promise.reject(new Error("no")))).rejects.toThrow("no");
    expect(await cache.get("failing", load)).toBe(3);
  });
});
