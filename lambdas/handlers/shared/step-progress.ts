// Where a long step's live progress goes: to listeners in the same process. On Lambda nobody listens (the
// log line every 10 s is what on-call reads); locally the handlers run inside the CLI, which draws it.
import { EventEmitter } from "node:events";

export interface StepProgress {
  activity: string;
  bytes: number;
  totalBytes?: number | undefined;
}

const events = new EventEmitter();

export function reportStepProgress(progress: StepProgress): void {
  if (events.listenerCount("progress") > 0) events.emit("progress", progress);
}

/** Hears every step's progress until the returned function is called. */
export function listenToStepProgress(listener: (progress: StepProgress) => void): () => void {
  events.on("progress", listener);
  return () => events.off("progress", listener);
}
