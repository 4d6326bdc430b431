// A member asked for its HashKV through a source opened only when asked — after the snapshot proved sound —
// and closed by whoever made it. Opening may fail like the call itself: the check then says why it could
// not compare (member-hash-check.ts).
import type { HashedMember } from "./member-hash-check.js";
import type { SnapshotSource } from "./snapshot-source.js";

export interface LazyMember extends HashedMember {
  close(): void;
}

export function lazyMember(
  description: string,
  open: () => Promise<Pick<SnapshotSource, "hashKV" | "close">>,
): LazyMember {
  let opened: ReturnType<typeof open> | undefined;
  return {
    description,
    async hashKV(revision) {
      opened ??= open();
      return (await opened).hashKV(revision);
    },
    close() {
      opened?.then((source) => source.close()).catch(() => undefined);
    },
  };
}
