// The sink's abort path against a scripted S3 whose parts are slow: the timeline of requests shows whether
// a part could reach S3 after the upload was aborted (S3 may then keep it as an orphan part).
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { ErrorNames } from "../../lambdas/core/errors.js";
import { MultipartUploadSink } from "../../lambdas/core/store/multipart-upload-sink.js";

const partSize = 5 * 1024 * 1024;
const partDelayMs = 200;
const client = new S3Client({
  region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
});
const s3 = mockClient(client);

afterEach(() => s3.reset());
afterAll(() => {
  s3.restore();
  client.destroy();
});

/** Scripts a slow S3 and records, in order, when each part starts and ends and when the abort is sent. */
function slowS3(abort: () => Promise<void> = async () => {}): string[] {
  const timeline: string[] = [];
  s3.on(CreateMultipartUploadCommand).resolves({ UploadId: "upload-1" });
  s3.on(UploadPartCommand).callsFake(async (input: { PartNumber: number }) => {
    timeline.push(`start part ${input.PartNumber}`);
    await sleep(partDelayMs);
    timeline.push(`end part ${input.PartNumber}`);
    return { ETag: `"etag-${input.PartNumber}"` };
  });
  s3.on(AbortMultipartUploadCommand).callsFake(async () => {
    timeline.push("abort");
    await abort();
    return {};
  });
  return timeline;
}

/**
 * A source that hands over two whole parts at once, then fails while the second part's write is still
 * waiting for the only upload slot: the moment a late part could slip past the abort.
 */
function sourceFailingWhileAPartWaits(): Readable {
  const source = new Readable({ read() {} });
  source.push(Buffer.alloc(2 * partSize + 1024, 7));
  setTimeout(() => source.destroy(new Error("etcd went away")), partDelayMs / 4);
  return source;
}

async function closed(sink: MultipartUploadSink): Promise<void> {
  if (!sink.closed) await new Promise((resolve) => sink.once("close", resolve));
}

describe("MultipartUploadSink abort", () => {
  it("starts no part once it is aborting, and aborts only after every part in flight has ended", async () => {
    const timeline = slowS3();
    const sink = new MultipartUploadSink({ client, bucket: "b", key: "k", partSize, partsInFlight: 1 });
    await expect(pipeline(sourceFailingWhileAPartWaits(), sink)).rejects.toThrow("etcd went away");
    await closed(sink);
    // Part 2 was filled and waiting for part 1's slot when the source failed: it must never start.
    expect(timeline).toEqual(["start part 1", "end part 1", "abort"]);
  });

  it("keeps the original error and names the failed abort in its message", async () => {
    slowS3(async () => {
      throw Object.assign(new Error("We encountered an internal error. Please try again."), {
        name: "InternalError",
      });
    });
    const sink = new MultipartUploadSink({ client, bucket: "b", key: "k", partSize, partsInFlight: 1 });
    const failure = pipeline(sourceFailingWhileAPartWaits(), sink).catch((error: unknown) => error);
    await closed(sink);
    const error = (await failure) as Error;
    expect(error.message).toMatch(/^etcd went away/);
    expect(error.message).toContain(
      "AbortMultipartUpload of upload-1 failed; its parts may remain: InternalError: We encountered an internal error",
    );
  });

  it("reports a failed abort as StorageUnavailableError when it was destroyed without an error", async () => {
    slowS3(async () => {
      throw new Error("connection reset");
    });
    const sink = new MultipartUploadSink({ client, bucket: "b", key: "k", partSize, partsInFlight: 1 });
    // Destroyed before the upload is created: the abort runs once CreateMultipartUpload has answered.
    sink.write(Buffer.alloc(1024));
    const emitted = new Promise<Error>((resolve) => sink.once("error", resolve));
    sink.destroy();
    expect(await emitted).toMatchObject({
      name: ErrorNames.StorageUnavailable,
      message: expect.stringContaining("AbortMultipartUpload of upload-1 failed"),
    });
  });
});
