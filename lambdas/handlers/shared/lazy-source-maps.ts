// Readable stack traces from the minified bundle without `--enable-source-maps`, which makes Node parse
// the bundle's whole source map (4 MB for the largest handlers) at every cold start: 90–170 ms of
// module load, measured in docs/benchmarks.md. Here a bundle's map is read only when a stack trace
// that passes through it is first formatted — on the failure path, where on-call reads it.
import { readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { fileURLToPath } from "node:url";

/** Per generated file: its map, or null where it has none (Node's own modules, unbundled code). */
const maps = new Map<string, SourceMap | null>();

function sourceMapOf(file: string): SourceMap | null {
  let map = maps.get(file);
  if (map === undefined) {
    map = null;
    if (file.startsWith("file:") || file.startsWith("/")) {
      try {
        const path = file.startsWith("file:") ? fileURLToPath(file) : file;
        map = new SourceMap(JSON.parse(readFileSync(`${path}.map`, "utf8")));
      } catch {
        // No map beside the file: its frames stay as they are.
      }
    }
    maps.set(file, map);
  }
  return map;
}

/**
 * A source path as the project names it: the map's paths are relative to wherever the bundle was built
 * (a temporary directory, or a container's), so they are cut at `lambdas/` or `node_modules/`.
 */
function readableSource(source: string): string {
  const fromProject = /(?:^|\/)((?:node_modules|lambdas)\/.*)$/.exec(source);
  return fromProject?.[1] ?? source.replace(/^(\.\.\/)+/, "");
}

/** One frame, at its original source position when the file has a map that covers it. */
function describeFrame(frame: NodeJS.CallSite): string {
  const file = frame.getFileName();
  const line = frame.getLineNumber();
  const column = frame.getColumnNumber();
  const map = file && line !== null && column !== null ? sourceMapOf(file) : null;
  if (!map || line === null || column === null) return String(frame);
  const entry = map.findEntry(line - 1, column - 1) as Partial<{
    originalSource: string;
    originalLine: number;
    originalColumn: number;
  }>;
  if (entry.originalSource === undefined || entry.originalLine === undefined) return String(frame);
  const position = `${readableSource(entry.originalSource)}:${entry.originalLine + 1}:${(entry.originalColumn ?? 0) + 1}`;
  // Minified function names mean nothing: the original position says where the frame is.
  return frame.isAsync() ? `async ${position}` : position;
}

function headerOf(error: unknown): string {
  try {
    return String(error);
  } catch {
    return "Error";
  }
}

/**
 * On Lambda, formats every stack trace with original positions, reading maps lazily. Does nothing
 * elsewhere (tests and local runs execute the TypeScript itself) or when Node maps stacks already
 * (`--enable-source-maps`, which a deployment may still choose).
 */
export function installLazySourceMaps(environment: NodeJS.ProcessEnv = process.env): void {
  if (!environment.AWS_LAMBDA_FUNCTION_NAME || process.sourceMapsEnabled) return;
  Error.prepareStackTrace = (error: unknown, frames: NodeJS.CallSite[]) =>
    [headerOf(error), ...frames.map((frame) => `    at ${describeFrame(frame)}`)].join("\n");
}
