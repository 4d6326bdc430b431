// The catalogued snapshot object as a restore finds it: checked before approval, and again once the
// cluster's lease keeps retention away.
import { GetObjectTaggingCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { SnapshotCorruptError, SnapshotNotFoundError } from "../errors.js";
import type { RestoreDependencies } from "./restore-dependencies.js";

/** The catalogued object version is there, with the catalogued sha256 in its tags; its metadata and size. */
export async function checkStoredObject(
  dependencies: Pick<RestoreDependencies, "s3">,
  row: { bucket: string; key: string; versionId?: string; sha256?: string; snapshotId: string },
) {
  const where = `s3://${row.bucket}/${row.key}${row.versionId ? ` version ${row.versionId}` : ""}`;
  try {
    const head = await dependencies.s3.send(
      new HeadObjectCommand({ Bucket: row.bucket, Key: row.key, VersionId: row.versionId }),
    );
    const tags = await dependencies.s3.send(
      new GetObjectTaggingCommand({ Bucket: row.bucket, Key: row.key, VersionId: row.versionId }),
    );
    const storedSha = tags.TagSet?.find((tag) => tag.Key === "sha256")?.Value;
    if (storedSha !== row.sha256) {
      throw new SnapshotCorruptError(
        `${where} carries sha256 ${storedSha ?? "(none)"}, but the catalogue says ${row.sha256}`,
      );
    }
    return { metadata: head.Metadata ?? {}, bytes: head.ContentLength ?? 0 };
  } catch (error) {
    if (error instanceof SnapshotCorruptError) throw error;
    const name = (error as { name?: string }).name;
    if (name === "NotFound" || name === "NoSuchKey" || name === "NoSuchVersion") {
      throw new SnapshotNotFoundError(
        `snapshot ${row.snapshotId} is catalogued, but ${where} does not exist`,
      );
    }
    throw error;
  }
}
