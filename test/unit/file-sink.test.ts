import { randomBytes } from "node:crypto";
import { readdirSync, readlinkSync, realpathSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it, vi } from "vitest";
import { FileSink } from "../../lambdas/core/snapshot/file-sink.js";
import { makeTempDir } from "../support/temp-dir.js";

async function withTempDir(use: (dir: string) => Promise<void>): Promise<void> {
  const dir = await makeTempDir("file-sink-");
  try {
    await use(dir.path);
  } finally {
    await dir.remove();
  }
}

/** This process's open file descriptors that point at `path` (Linux: /proc/self/fd). */
function descriptorsOpenOn(path: string): string[] {
  const target = realpathSync(path);
  return readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === target;
    } catch {
      return false; // the descriptor readdir itself used, closed by now
    }
  });
}

describe("FileSink", () => {
  it("writes every byte in order across batch boundaries, including a last partial batch", async () => {
    await withTempDir(async (dir) => {
      // Chunk sizes that straddle the 64 KiB batch in every way: smaller, equal, larger, and a tail.
      const chunks = [1, 32768, 32767, 65536, 100_000, 7, 65535, 3].map((size) => randomBytes(size));
      const path = join(dir, "out.db");
      await pipeline(Readable.from(chunks), new FileSink(path, 65536));
      expect((await readFile(path)).equals(Buffer.concat(chunks))).toBe(true);
    });
  });

  it("writes an empty file when the stream is empty", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "empty.db");
      await pipeline(Readable.from([]), new FileSink(path));
      expect((await readFile(path)).length).toBe(0);
    });
  });

  it("fails the pipeline when the file cannot be opened", async () => {
    await withTempDir(async (dir) => {
      const sink = new FileSink(join(dir, "missing", "out.db"));
      await expect(pipeline(Readable.from([Buffer.from("x")]), sink)).rejects.toThrow(/ENOENT/);
    });
  });

  it("closes its file when the source fails mid-stream", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "out.db");
      const sink = new FileSink(path, 16);
      let openWhileWriting: string[] = [];
      async function* failing() {
        yield Buffer.alloc(64);
        // The 64 bytes fill the 16-byte batch: once they are on disk the sink holds the file open.
        await vi.waitFor(async () => expect((await stat(path)).size).toBe(64));
        openWhileWriting = descriptorsOpenOn(path);
        throw new Error("etcd went away");
      }
      await expect(pipeline(Readable.from(failing()), sink)).rejects.toThrow("etcd went away");
      if (!sink.closed) await new Promise((resolve) => sink.once("close", resolve));
      expect(sink.destroyed).toBe(true);
      // The check below can see the sink's descriptor: it did while the sink was writing.
      expect(openWhileWriting).toHaveLength(1);
      expect(descriptorsOpenOn(path)).toEqual([]);
    });
  });
});
