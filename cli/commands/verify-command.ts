// `etcd-backup verify FILE|s3://BUCKET/KEY`: prove a stored snapshot sound and print its figures,
// named as `etcdctl snapshot status -w json` names them.
import { stat } from "node:fs/promises";
import { InvalidInputError, SnapshotNotFoundError } from "../../lambdas/core/errors.js";
import { verifySnapshotFile } from "../../lambdas/core/snapshot/verify-snapshot.js";
import { verifyStoredSnapshot } from "../../lambdas/core/snapshot/verify-stored-snapshot.js";
import { createS3Client } from "../../lambdas/core/store/aws-clients.js";
import { localSessionEnvironment } from "../local/local-session.js";
import { parseSnapshotLocation, withMissingBucketNamed } from "../snapshot-location.js";
import { formatBytes, printJson } from "../terminal-output.js";

export interface VerifyCommandFlags {
  /** The S3 of the running `etcd-backup local up`. */
  local?: boolean;
  s3Endpoint?: string;
  region?: string;
  versionId?: string;
  json?: boolean;
}

export async function runVerifyCommand(target: string, flags: VerifyCommandFlags) {
  const location = parseSnapshotLocation(target);
  let report: Awaited<ReturnType<typeof verifySnapshotFile>>;
  if (location.kind === "file") {
    await checkSnapshotFile(location.path);
    report = await verifySnapshotFile(location.path);
  } else {
    const endpoint = flags.local ? (await localSessionEnvironment()).s3.endpoint : flags.s3Endpoint;
    const client = createS3Client({ endpoint, region: flags.region });
    try {
      report = await verifyStoredSnapshot(client, { ...location, versionId: flags.versionId }, {});
    } catch (error) {
      throw withMissingBucketNamed(error, location.bucket, target);
    } finally {
      client.destroy();
    }
  }
  const output = {
    hash: report.hash,
    revision: report.revision,
    totalKey: report.totalKey,
    totalSize: report.totalSize,
    liveKeyCount: report.liveKeyCount,
    sha256: report.sha256,
    hasTrailer: report.hasTrailer,
    compactRevision: report.compactRevision,
    // etcd's HashKV at the revision, for the file's compact revision (-1: none): what each member restored
    // from it answers to `etcdctl endpoint hashkv --rev <revision>`.
    kvHash: { hash: report.kvHash, compactRevision: report.compactRevision ?? -1 },
    storageVersion: report.storageVersion,
    fileBytes: report.fileBytes,
    pageSize: report.pageSize,
  };
  if (flags.json) {
    printJson(output);
    return output;
  }
  process.stdout.write(
    `${[
      `${target}: sound`,
      `  hash       ${report.hash.toString(16).padStart(8, "0")}`,
      `  revision   ${report.revision}`,
      `  keys       ${report.liveKeyCount} live, ${report.totalKey} entries in all buckets`,
      `  size       ${formatBytes(report.totalSize)} database, ${formatBytes(report.fileBytes)} file`,
      `  sha256     ${report.sha256}${report.hasTrailer ? " (matches the trailer)" : " (no trailer)"}`,
      `  HashKV     ${report.kvHash} at revision ${report.revision} (what a member restored from it answers)`,
    ].join("\n")}\n`,
  );
  return output;
}

/** A missing or unreadable path is the operator's mistake, said in one line, not a raw ENOENT. */
async function checkSnapshotFile(path: string): Promise<void> {
  let isFile: boolean;
  try {
    isFile = (await stat(path)).isFile();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      throw new SnapshotNotFoundError(
        `no snapshot file at ${path}: check the path (an S3 object is s3://BUCKET/KEY)`,
      );
    }
    throw new InvalidInputError(
      `cannot read ${path} (${code ?? (error as Error).message}): check that this user may read it`,
    );
  }
  if (!isFile) throw new InvalidInputError(`${path} is not a file: give the path of a snapshot file`);
}
