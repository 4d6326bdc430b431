// writev may write less than it was given (rare for regular files, but allowed): the rest is written
// until none is left, so that a short write never silently drops bytes of a snapshot.
import type { FileHandle } from "node:fs/promises";

export async function writevFully(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  const total = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
  const { bytesWritten } = await handle.writev(buffers);
  if (bytesWritten >= total) return;
  const rest = Buffer.concat(buffers).subarray(bytesWritten);
  for (let offset = 0; offset < rest.length; ) {
    offset += (await handle.write(rest, offset, rest.length - offset)).bytesWritten;
  }
}
