// The S3 endpoint's own ingest rate: a multipart upload of a local file with nothing else in the path —
// positioned reads into part buffers, UploadPart with a fixed number in flight, no stream, no checksum, and
// the payload unsigned as the product's parts are (as the AWS CLI's are over HTTPS).
// It is the reference the product's streamed upload is compared with, and the second step of the seed's
// two-step method (`etcdctl snapshot save`, then upload the file).
import { open } from "node:fs/promises";
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { readFully } from "../lambdas/core/snapshot/write-fully.js";
import { signWithoutPayloadHash } from "../lambdas/core/store/unsigned-payload.js";

export interface PlainUploadOptions {
  client: S3Client;
  bucket: string;
  key: string;
  partSize: number;
  partsInFlight: number;
}

export async function uploadFileInParts(path: string, options: PlainUploadOptions): Promise<number> {
  const { client, bucket, key, partSize, partsInFlight } = options;
  const handle = await open(path, "r");
  const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const uploadId = created.UploadId;
  try {
    const size = (await handle.stat()).size;
    const partCount = Math.max(1, Math.ceil(size / partSize));
    const completed: CompletedPart[] = [];
    let nextPart = 0;
    const uploadNext = async (): Promise<void> => {
      while (nextPart < partCount) {
        const index = nextPart++;
        const length = Math.min(partSize, size - index * partSize);
        const body = Buffer.allocUnsafe(length);
        await readFully(handle, body, index * partSize, () => new Error(`${path} shrank while uploading`));
        const command = new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: index + 1,
          Body: body,
          ContentLength: length,
        });
        signWithoutPayloadHash(command);
        const reply = await client.send(command);
        completed.push({ PartNumber: index + 1, ETag: reply.ETag });
      }
    };
    await Promise.all(Array.from({ length: partsInFlight }, uploadNext));
    completed.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: completed },
      }),
    );
    return size;
  } catch (error) {
    await client
      .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))
      .catch(() => undefined);
    throw error;
  } finally {
    await handle.close();
  }
}
