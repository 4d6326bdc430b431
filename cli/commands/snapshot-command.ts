// `etcd-backup snapshot`: stream one snapshot from etcd to a file or S3, verify what was stored,
// and catalogue it when a table is given.

import { InvalidInputError } from "../../lambdas/core/errors.js";
import { chooseSnapshotMember } from "../../lambdas/core/etcd/choose-member.js";
import { createGrpcSnapshotSource } from "../../lambdas/core/etcd/grpc-snapshot-source.js";
import { newSnapshotId, snapshotObjectKey } from "../../lambdas/core/snapshot/snapshot-naming.js";
import {
  type StreamedSnapshot,
  streamSnapshotToFile,
  streamSnapshotToS3,
  tagSnapshotObject,
} from "../../lambdas/core/snapshot/stream-snapshot.js";
import { verifySnapshotFile } from "../../lambdas/core/snapshot/verify-snapshot.js";
import {
  checkAgainstExpected,
  type VerifiedSnapshot,
  verifyStoredSnapshot,
} from "../../lambdas/core/snapshot/verify-stored-snapshot.js";
import { createS3Client } from "../../lambdas/core/store/aws-clients.js";
import { parseSnapshotLocation } from "../snapshot-location.js";
import { createProgressLine, formatBytes, printJson } from "../terminal-output.js";
import { readTlsFiles } from "../tls-files.js";
import { openCatalogueRecorder } from "./catalogue-recorder.js";

export interface SnapshotCommandFlags {
  endpoints: string;
  cacert?: string;
  cert?: string;
  key?: string;
  to: string;
  s3Endpoint?: string;
  region?: string;
  kmsKeyId?: string;
  cluster: string;
  table?: string;
  dynamodbEndpoint?: string;
  json?: boolean;
}

export interface SnapshotCommandResult {
  snapshotId: string;
  cluster: string;
  bytes: number;
  sha256: string;
  revision: number;
  totalKey: number;
  liveKeyCount: number;
  etcdVersion: string;
  source: string;
  location: string;
  versionId?: string | undefined;
  durationMs: number;
}

export async function runSnapshotCommand(flags: SnapshotCommandFlags): Promise<SnapshotCommandResult> {
  const endpoints = flags.endpoints
    .split(",")
    .map((endpoint) => endpoint.trim())
    .filter(Boolean);
  if (endpoints.length === 0) throw new InvalidInputError("--endpoints needs at least one URL");
  const destination = parseSnapshotLocation(flags.to);
  const snapshotId = newSnapshotId();
  const started = Date.now();
  const tls = await readTlsFiles(flags);
  const progress = createProgressLine("snapshot", Boolean(process.stderr.isTTY) && !flags.json);
  const onProgress = (bytes: number) => progress.update(bytes);

  const member = await chooseSnapshotMember(endpoints, { tls });
  const source = createGrpcSnapshotSource(member.client);
  const s3 =
    destination.kind === "s3"
      ? createS3Client({ endpoint: flags.s3Endpoint, region: flags.region })
      : undefined;
  const catalogue = await openCatalogueRecorder(flags, { cluster: flags.cluster, snapshotId });
  try {
    let streamed: StreamedSnapshot;
    let verified: VerifiedSnapshot;
    let location: string;
    let versionId: string | undefined;
    if (destination.kind === "file") {
      await catalogue?.started({ bucket: "", key: destination.path, sourceMember: source.description });
      const saved = await streamSnapshotToFile(source, destination.path, { onProgress });
      progress.done();
      streamed = saved;
      location = saved.path;
      await catalogue?.uploaded(streamed, undefined);
      verified = checkAgainstExpected(await verifySnapshotFile(saved.path), streamed, saved.path);
    } else {
      const client = s3 as NonNullable<typeof s3>;
      const key = snapshotObjectKey(destination.key, flags.cluster, snapshotId);
      await catalogue?.started({ bucket: destination.bucket, key, sourceMember: source.description });
      const stored = await streamSnapshotToS3(
        source,
        {
          client,
          bucket: destination.bucket,
          prefix: destination.key,
          cluster: flags.cluster,
          snapshotId,
          kmsKeyId: flags.kmsKeyId,
        },
        { onProgress },
      );
      progress.done();
      streamed = stored;
      versionId = stored.object.versionId;
      location = `s3://${destination.bucket}/${stored.object.key}`;
      await catalogue?.uploaded(streamed, versionId);
      verified = await verifyStoredSnapshot(client, stored.object, stored);
      await tagSnapshotObject(client, stored.object, {
        sha256: verified.sha256,
        revision: String(verified.snapshotRevision),
        "etcd-backup-status": "verified",
      });
    }
    await catalogue?.verified(verified);
    const result: SnapshotCommandResult = {
      snapshotId,
      cluster: flags.cluster,
      bytes: streamed.bytes,
      sha256: verified.sha256,
      revision: verified.snapshotRevision,
      totalKey: verified.totalKey,
      liveKeyCount: verified.liveKeyCount,
      etcdVersion: streamed.etcdVersion,
      source: streamed.source,
      location,
      versionId,
      durationMs: Date.now() - started,
    };
    if (flags.json) printJson(result);
    else printSummary(result);
    return result;
  } catch (error) {
    progress.done();
    await catalogue?.failed(error);
    throw error;
  } finally {
    source.close();
    s3?.destroy();
    catalogue?.close();
  }
}

function printSummary(result: SnapshotCommandResult): void {
  const seconds = result.durationMs / 1000;
  const lines = [
    `snapshot ${result.snapshotId} of cluster ${result.cluster} verified`,
    `  location   ${result.location}${result.versionId ? ` (version ${result.versionId})` : ""}`,
    `  size       ${formatBytes(result.bytes)} in ${seconds.toFixed(1)} s (${formatBytes(result.bytes / seconds)}/s)`,
    `  sha256     ${result.sha256}`,
    `  revision   ${result.revision}, ${result.liveKeyCount} live keys, ${result.totalKey} entries`,
    `  etcd       ${result.etcdVersion} at ${result.source}`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}
