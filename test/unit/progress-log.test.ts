import { afterEach, describe, expect, it, vi } from "vitest";
import type { StepReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { progressLog } from "../../lambdas/core/backup/progress-log.js";

afterEach(() => {
  vi.useRealTimers();
});

function recordingReporter() {
  const lines: Array<[string, Record<string, unknown> | undefined]> = [];
  const live: Array<[string, number, number | undefined]> = [];
  const reporter: StepReporter = {
    info: (message, details) => lines.push([message, details]),
    warn: () => {},
    metric: () => {},
    progress: (activity, bytes, totalBytes) => live.push([activity, bytes, totalBytes]),
  };
  return { reporter, lines, live };
}

describe("progressLog", () => {
  it("passes every chunk to the live progress but logs at most once every 10 s", () => {
    vi.useFakeTimers({ now: 0 });
    const { reporter, lines, live } = recordingReporter();
    const details = vi.fn(() => ({ snapshotId: "s1" }));
    const progress = progressLog(reporter, "streaming", details);
    for (let second = 1; second <= 25; second++) {
      vi.setSystemTime(second * 1000);
      progress(second * 100, 2500);
    }
    expect(live).toHaveLength(25);
    expect(live.at(-1)).toEqual(["streaming", 2500, 2500]);
    expect(lines).toEqual([
      ["streaming", { snapshotId: "s1", bytes: 1000, totalBytes: 2500 }],
      ["streaming", { snapshotId: "s1", bytes: 2000, totalBytes: 2500 }],
    ]);
    // The details are built only for the lines written.
    expect(details).toHaveBeenCalledTimes(2);
  });

  it("works with a reporter that has no live progress, and leaves totalBytes out when unknown", () => {
    vi.useFakeTimers({ now: 0 });
    const lines: unknown[] = [];
    const progress = progressLog(
      { info: (...line) => lines.push(line), warn: () => {}, metric: () => {} },
      "reading back",
      () => ({}),
    );
    vi.setSystemTime(10_000);
    progress(42);
    expect(lines).toEqual([["reading back", { bytes: 42 }]]);
  });
});
