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

export async function writevFully(handle: FileHandle, buffers: Buffer[]): Promise<void> {
  const total = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
  const { bytesWritten } = await handle.writev(buffers);
  if (bytesWritten >= total) return;
  const rest = Buffer.concat(buffers).subarray(bytesWritten);
  for (let offset = 0; offset < rest.length; ) {
    offset += (await handle.write(rest, offset, rest.length - offset)).bytesWritten;
  }
}
