// Long steps (streaming a snapshot, reading one back) say how far they got, without a log line per chunk.
import type { StepReporter } from "./backup-dependencies.js";

const progressIntervalMs = 10_000;

/**
 * Called per chunk of a stream: tells the reporter's live progress every time, and logs `activity` at
 * most once every 10 s, building the details only when a line is written.
 */
export function progressLog(
  reporter: StepReporter,
  activity: string,
  details: () => Record<string, unknown>,
): (bytes: number, totalBytes?: number) => void {
  let last = Date.now();
  return (bytes, totalBytes) => {
    reporter.progress?.(activity, bytes, totalBytes);
    const now = Date.now();
    if (now - last < progressIntervalMs) return;
    last = now;
    reporter.info(activity, { ...details(), bytes, ...(totalBytes === undefined ? {} : { totalBytes }) });
  };
}
