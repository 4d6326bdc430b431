// s3rver on a free loopback port, with one bucket and an S3 client pointed at it.
// s3rver (3.7) implements neither ListMultipartUploads nor AbortMultipartUpload; both are added here
// over its own on-disk layout (`<bucket>/._S3rver_uploads/<uploadId>/`), so that tests can prove that a
// failed upload leaves no parts behind. A fault injector makes chosen UploadPart calls fail.
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
// @ts-expect-error s3rver ships no type definitions
import S3rver from "s3rver";
import { createS3Client, loopbackCredentials } from "../../lambdas/core/store/aws-clients.js";
import { findFreePort } from "./free-port.js";
import { makeTempDir } from "./temp-dir.js";

/** The credentials s3rver accepts. */
export const localCredentials = loopbackCredentials;

export interface LocalS3 {
  endpoint: string;
  bucket: string;
  client: S3Client;
  /** Keys of every object in the bucket. */
  listKeys(prefix?: string): Promise<string[]>;
  /** Keys of every multipart upload that was started and neither completed nor aborted. */
  listOpenMultipartUploads(): Promise<string[]>;
  /** Makes UploadPart fail with a 500 once `partsBeforeFailure` parts have been accepted. */
  failUploadPartAfter(partsBeforeFailure: number): void;
  stop(): Promise<void>;
}

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | undefined>;
  status: number;
  body: unknown;
  type: string;
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

export async function startLocalS3(bucket = "etcd-backup-test"): Promise<LocalS3> {
  const directory = await makeTempDir("s3");
  const port = await findFreePort();
  const server = new S3rver({
    address: "127.0.0.1",
    port,
    silent: true,
    directory: directory.path,
    configureBuckets: [{ name: bucket }],
  });
  const uploadsDir = join(directory.path, bucket, "._S3rver_uploads");
  const fault = { partsBeforeFailure: Number.POSITIVE_INFINITY, partsAccepted: 0 };

  const openUploads = async (): Promise<Array<{ uploadId: string; key: string }>> => {
    const ids = await readdir(uploadsDir).catch(() => [] as string[]);
    return Promise.all(
      ids.map(async (uploadId) => ({
        uploadId,
        // A part stored after its upload was aborted leaves a directory without the key file: still a
        // leftover to report, not a listing error.
        key: await readFile(join(uploadsDir, uploadId, "key"), "utf8").catch(() => `(parts of ${uploadId})`),
      })),
    );
  };

  const multipartExtensions: KoaMiddleware = async (ctx, next) => {
    const isBucketPath = ctx.path === `/${bucket}` || ctx.path === `/${bucket}/`;
    if (ctx.method === "GET" && isBucketPath && "uploads" in ctx.query) {
      const uploads = await openUploads();
      ctx.type = "application/xml";
      ctx.body = `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult><Bucket>${bucket}</Bucket>${uploads
        .map((upload) => `<Upload><Key>${upload.key}</Key><UploadId>${upload.uploadId}</UploadId></Upload>`)
        .join("")}<IsTruncated>false</IsTruncated></ListMultipartUploadsResult>`;
      return;
    }
    const uploadId = ctx.query.uploadId;
    if (ctx.method === "DELETE" && uploadId && ctx.path.startsWith(`/${bucket}/`)) {
      if (!(await openUploads()).some((upload) => upload.uploadId === uploadId)) {
        ctx.status = 404;
        ctx.type = "application/xml";
        ctx.body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist</Message></Error>`;
        return;
      }
      await rm(join(uploadsDir, uploadId), { recursive: true, force: true });
      ctx.status = 204;
      return;
    }
    if (ctx.method === "PUT" && uploadId && ctx.query.partNumber) {
      if (fault.partsAccepted >= fault.partsBeforeFailure) {
        ctx.status = 500;
        ctx.type = "application/xml";
        ctx.body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected failure</Message></Error>`;
        return;
      }
      fault.partsAccepted++;
    }
    await next();
  };
  // Koa composes its middleware when the server starts: put the extensions before s3rver's router.
  (server as { middleware: KoaMiddleware[] }).middleware.unshift(multipartExtensions);
  await server.run();

  const endpoint = `http://127.0.0.1:${port}`;
  const client = createS3Client({ endpoint });
  return {
    endpoint,
    bucket,
    client,
    async listKeys(prefix) {
      const reply = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
      return (reply.Contents ?? []).map((object) => object.Key ?? "");
    },
    async listOpenMultipartUploads() {
      return (await openUploads()).map((upload) => upload.key);
    },
    failUploadPartAfter(partsBeforeFailure) {
      fault.partsBeforeFailure = partsBeforeFailure;
      fault.partsAccepted = 0;
    },
    async stop() {
      client.destroy();
      await server.close();
      await directory.remove();
    },
  };
}
