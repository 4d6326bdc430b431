// Starts bench/s3rver-process.ts as a child process and waits for the endpoint it prints.
import { startHelperProcess } from "./helper-process.js";

export interface S3EndpointProcess {
  endpoint: string;
  bucket: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startS3EndpointProcess(): Promise<S3EndpointProcess> {
  const helper = await startHelperProcess<{ endpoint: string; bucket: string }>(
    "s3rver-process.ts",
    [],
    "s3rver",
  );
  return { ...helper.printed, pid: helper.pid, stop: helper.stop };
}
