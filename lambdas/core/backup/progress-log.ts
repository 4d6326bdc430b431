// Long steps (streaming a snapshot, reading one back) say how far they got, without a log line per chunk.
import type { StepReporter } from "./backup-dependencies.js";

const progressIntervalMs = 10_000;

/**
 * Logs `message` at most once every 10 s. Called per chunk of a stream: the details are built only when
 * a line is written.
 */
export function progressLog(
  reporter: StepReporter,
  message: string,
): (details: () => Record<string, unknown>) => void {
  let last = Date.now();
  return (details) => {
    const now = Date.now();
    if (now - last < progressIntervalMs) return;
    last = now;
    reporter.info(message, details());
  };
}
