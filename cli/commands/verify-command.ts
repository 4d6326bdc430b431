// `etcd-backup verify FILE|s3://BUCKET/KEY`: prove a stored snapshot sound and print its figures,
// named as `etcdctl snapshot status -w json` names them.
import { verifySnapshotFile } from "../../lambdas/core/snapshot/verify-snapshot.js";
import { verifyStoredSnapshot } from "../../lambdas/core/snapshot/verify-stored-snapshot.js";
import { createS3Client } from "../../lambdas/core/store/aws-clients.js";
import { parseSnapshotLocation } from "../snapshot-location.js";
import { formatBytes, printJson } from "../terminal-output.js";

export interface VerifyCommandFlags {
  s3Endpoint?: string;
  region?: string;
  versionId?: string;
  json?: boolean;
}

export async function runVerifyCommand(target: string, flags: VerifyCommandFlags) {
  const location = parseSnapshotLocation(target);
  let report: Awaited<ReturnType<typeof verifySnapshotFile>>;
  if (location.kind === "file") {
    report = await verifySnapshotFile(location.path);
  } else {
    const client = createS3Client({ endpoint: flags.s3Endpoint, region: flags.region });
    try {
      report = await verifyStoredSnapshot(client, { ...location, versionId: flags.versionId }, {});
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
    ].join("\n")}\n`,
  );
  return output;
}
