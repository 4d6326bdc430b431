// How commands speak: data on stdout (one JSON object with --json), progress and errors on stderr.

import { formatBytes } from "../lambdas/core/byte-size.js";
import { describeError } from "../lambdas/core/errors.js";

export { formatBytes };

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** `error: <what happened>` on one line; the stack only with --debug. */
export function printError(error: unknown, debug: boolean): void {
  process.stderr.write(`etcd-backup: ${describeErrorLine(error)}\n`);
  if (debug && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
}

/**
 * describeError on one line, without what wrapping adds and says nothing: the error's own name repeated
 * inside its message, and the empty "Resolution note:" grpc-js appends.
 */
export function describeErrorLine(error: unknown): string {
  let line = describeError(error).replace(/\s*\n\s*/g, " ");
  if (error instanceof Error) {
    const name = `${error.name}: `;
    line = name + line.slice(name.length).replaceAll(name, "");
  }
  return line.replace(/\.?\s*Resolution note:\s*(?=[;|)]|$)/g, "").trim();
}

/** A one-line progress display (bytes, rate, and share when the total is known), redrawn at most 10 times a second. */
export function createProgressLine(label: string, enabled: boolean) {
  const started = Date.now();
  let lastDraw = 0;
  let drawn = false;
  const draw = (bytes: number, total?: number) => {
    const seconds = Math.max((Date.now() - started) / 1000, 0.001);
    const share = total ? ` ${Math.min(100, (bytes / total) * 100).toFixed(0)}%` : "";
    process.stderr.write(
      `\r${label}${share} ${formatBytes(bytes)} at ${formatBytes(bytes / seconds)}/s\u001b[K`,
    );
    drawn = true;
  };
  return {
    update(bytes: number, total?: number) {
      if (!enabled || Date.now() - lastDraw < 100) return;
      lastDraw = Date.now();
      draw(bytes, total);
    },
    done() {
      if (enabled && drawn) process.stderr.write("\r\u001b[K");
    },
  };
}

/**
 * One progress line per activity of a workflow's steps (streaming, then reading back), each cleared when
 * the next begins, when `done` is called, or when `say` prints a state's own line.
 */
export function createActivityProgress(enabled: boolean) {
  let current: { activity: string; line: ReturnType<typeof createProgressLine> } | undefined;
  const done = () => {
    current?.line.done();
    current = undefined;
  };
  return {
    /** A line of its own on stderr, below which the next progress line starts. */
    say(line: string): void {
      done();
      process.stderr.write(`${line}\n`);
    },
    update(progress: { activity: string; bytes: number; totalBytes?: number | undefined }) {
      if (current?.activity !== progress.activity) {
        done();
        current = {
          activity: progress.activity,
          line: createProgressLine(`      ${progress.activity}`, enabled),
        };
      }
      current.line.update(progress.bytes, progress.totalBytes);
    },
    done,
  };
}

/**
 * After SIGHUP the terminal is gone: a write fails (EIO, EPIPE), and an unhandled stream error would end
 * the process before its clean-up. Those errors are dropped from then on.
 */
export function ignoreOutputErrors(): void {
  for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {});
}
