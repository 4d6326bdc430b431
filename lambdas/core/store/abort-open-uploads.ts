// Aborts the multipart uploads left open under one object key: by a snapshot attempt that was killed
// (a Lambda timeout runs no clean-up), found by a retry, the failure path or retention.
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, type S3Client } from "@aws-sdk/client-s3";
import { storageError } from "./s3-errors.js";

export /** Aborts every multipart upload left open under exactly `key`. */
async function abortOpenUploads(s3: S3Client, bucket: string, key: string): Promise<number> {
  let aborted = 0;
  let markers: { KeyMarker?: string; UploadIdMarker?: string } = {};
  try {
    for (;;) {
      const page = await s3.send(
        new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key, ...markers }),
      );
      for (const upload of page.Uploads ?? []) {
        if (upload.Key !== key || upload.UploadId === undefined) continue;
        try {
          await s3.send(
            new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: upload.UploadId }),
          );
          aborted++;
        } catch (error) {
          if (!isNotFound(error)) throw error;
        }
      }
      if (!page.IsTruncated) return aborted;
      markers = { KeyMarker: page.NextKeyMarker, UploadIdMarker: page.NextUploadIdMarker };
    }
  } catch (error) {
    throw storageError(`aborting open uploads of s3://${bucket}/${key} failed`, error);
  }
}

function isNotFound(error: unknown): boolean {
  const name = (error as { name?: string }).name;
  return name === "NoSuchUpload" || name === "NotFound";
}
