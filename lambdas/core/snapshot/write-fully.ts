// writev may write less than it was given and read may return less than asked (rare for regular files, but
// allowed): both go on until the whole range is done, so that a short call never silently drops bytes.
import type { FileHandle } from "node:fs/promises";

/** Fills `buffer` from `position`; a file that ends first gets the caller's error. */
export async function readFully(
  handle: FileHandle,
  buffer: Buffer,
  position: number,
  endedEarly: () => Error,
): Promise<void> {
  for (let done = 0; done < buffer.length; ) {
    const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) throw endedEarly();
    done += bytesRead;
  }
}

export async function writevFully(
  handle: FileHandle,
  buffers: Buffer[],
  total = buffers.reduce((sum, buffer) => sum + buffer.length, 0),
): Promise<void> {
  const { bytesWritten } = await handle.writev(buffers);
  if (bytesWritten >= total) return;
  const rest = Buffer.concat(buffers).subarray(bytesWritten);
  for (let offset = 0; offset < rest.length; ) {
    offset += (await handle.write(rest, offset, rest.length - offset)).bytesWritten;
  }
}

/**
 * Chunks gathered for one writev: a stream's small chunks (etcd sends 32 KiB) cost a call each through
 * the thread pool otherwise.
 */
export class WriteBatch {
  private buffers: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly limitBytes: number) {}

  /** Adds a chunk; true once the batch holds at least its limit and should be written. */
  add(chunk: Buffer): boolean {
    this.buffers.push(chunk);
    this.bytes += chunk.length;
    return this.bytes >= this.limitBytes;
  }

  /** Writes what the batch holds to `handle` (nothing when empty) and empties it. */
  async writeTo(handle: FileHandle): Promise<void> {
    const { buffers, bytes } = this;
    this.clear();
    if (buffers.length > 0) await writevFully(handle, buffers, bytes);
  }

  clear(): void {
    this.buffers = [];
    this.bytes = 0;
  }
}
