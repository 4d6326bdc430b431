// `etcd-backup snapshot`: stream one snapshot from etcd to a file or S3, verify what was stored,
// and catalogue it when a table is given.

import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { describeMemberReach } from "../../lambdas/core/backup/step-payloads.js";
import { InvalidInputError } from "../../lambdas/core/errors.js";
import { chooseSnapshotMember } from "../../lambdas/core/etcd/choose-member.js";
import { createEtcdClient, type EtcdTlsMaterial } from "../../lambdas/core/etcd/etcd-client.js";
import { createGrpcSnapshotSource } from "../../lambdas/core/etcd/grpc-snapshot-source.js";
import type { CertificateExpiryWarning } from "../../lambdas/core/kube/certificate-expiry.js";
import { discoverEtcdMembers, readyPeersOf } from "../../lambdas/core/kube/discover-members.js";
import { createEksKubeConfig, kubeConfigFromFile } from "../../lambdas/core/kube/kube-config.js";
import {
  chooseKubernetesMember,
  openMemberSnapshotSource,
} from "../../lambdas/core/kube/kubernetes-member-source.js";
import { type MemberPreset, presetMemberSelector } from "../../lambdas/core/kube/member-presets.js";
import { type LazyMember, lazyMember } from "../../lambdas/core/snapshot/lazy-member.js";
import {
  describeMemberHashCheck,
  type MemberHashCheck,
} from "../../lambdas/core/snapshot/member-hash-check.js";
import { newSnapshotId, snapshotObjectKey } from "../../lambdas/core/snapshot/snapshot-naming.js";
import type { SnapshotSource } from "../../lambdas/core/snapshot/snapshot-source.js";
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
import { parseSnapshotLocation, withMissingBucketNamed } from "../snapshot-location.js";
import { createProgressLine, formatBytes, printJson } from "../terminal-output.js";
import { readTlsFiles } from "../tls-files.js";
import { openCatalogueRecorder } from "./catalogue-recorder.js";

export interface SnapshotCommandFlags {
  endpoints?: string;
  kubeconfig?: string;
  context?: string;
  eksCluster?: string;
  source?: "grpc" | "exec";
  /** Who runs the etcd pods: the discovery defaults and the source's (member-presets.ts). */
  preset?: MemberPreset;
  release?: string;
  namespace?: string;
  selector?: string;
  container?: string;
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
  /** The members' HashKV at the snapshot's revision against the snapshot's: who agrees, who differs, who could not answer. */
  memberHash: MemberHashCheck | undefined;
  etcdVersion: string;
  source: string;
  location: string;
  versionId?: string | undefined;
  durationMs: number;
}

export async function runSnapshotCommand(flags: SnapshotCommandFlags): Promise<SnapshotCommandResult> {
  const access = parseAccess(flags);
  const destination = parseSnapshotLocation(flags.to);
  if (destination.kind === "file" && flags.table) {
    // A catalogue row names an S3 object version, which is what a restore downloads and checks.
    throw new InvalidInputError(
      `--table catalogues snapshots stored in S3, which a restore can use; ${flags.to} is a file: drop --table, or give --to s3://BUCKET/PREFIX`,
    );
  }
  if (destination.kind === "file") await checkDestinationFile(destination.path);
  const snapshotId = newSnapshotId();
  const started = Date.now();
  const tls = await readTlsFiles(flags);
  const progress = createProgressLine("snapshot", Boolean(process.stderr.isTTY) && !flags.json);
  const onProgress = (bytes: number) => progress.update(bytes);

  const { source, peers } = await openCommandSource(access, flags, tls);
  const members = [source, ...peers];
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
      const saved = await streamSnapshotToFile(source, destination.path, { onProgress });
      progress.done();
      streamed = saved;
      location = saved.path;
      verified = checkAgainstExpected(
        await verifySnapshotFile(saved.path, { members }),
        streamed,
        saved.path,
      );
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
      verified = await verifyStoredSnapshot(client, stored.object, stored, { members });
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
      memberHash: verified.memberHash,
      etcdVersion: streamed.etcdVersion,
      source: streamed.source,
      location,
      versionId,
      durationMs: Date.now() - started,
    };
    if (flags.json) printJson(result);
    else printSummary(result);
    return result;
  } catch (caught) {
    progress.done();
    const error =
      destination.kind === "s3"
        ? withMissingBucketNamed(caught, destination.bucket, `--to ${flags.to}`)
        : caught;
    await catalogue?.failed(error);
    throw error;
  } finally {
    source.close();
    for (const peer of peers) peer.close();
    s3?.destroy();
    catalogue?.close();
  }
}

type CommandAccess =
  | { kind: "endpoints"; endpoints: string[] }
  | { kind: "kubeconfig"; path: string; context?: string | undefined }
  | { kind: "eks"; clusterName: string; region: string };

/** Exactly one of --endpoints, --kubeconfig, --eks-cluster says where etcd is. */
function parseAccess(flags: SnapshotCommandFlags): CommandAccess {
  const given = [flags.endpoints, flags.kubeconfig, flags.eksCluster].filter((flag) => flag !== undefined);
  if (given.length !== 1) {
    throw new InvalidInputError(
      "give exactly one of --endpoints (etcd reached directly), --kubeconfig or --eks-cluster (etcd pods found through Kubernetes)",
    );
  }
  if (flags.context !== undefined && flags.kubeconfig === undefined) {
    throw new InvalidInputError("--context needs --kubeconfig");
  }
  if (flags.endpoints !== undefined) {
    const endpoints = flags.endpoints
      .split(",")
      .map((endpoint) => endpoint.trim())
      .filter(Boolean);
    if (endpoints.length === 0) throw new InvalidInputError("--endpoints needs at least one URL");
    return { kind: "endpoints", endpoints };
  }
  if (flags.kubeconfig !== undefined)
    return { kind: "kubeconfig", path: flags.kubeconfig, context: flags.context };
  const region = flags.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (!region) throw new InvalidInputError("--eks-cluster needs --region (or AWS_REGION)");
  return { kind: "eks", clusterName: flags.eksCluster as string, region };
}

/**
 * A file destination must be a new or regular file in a writable directory: said before etcd is asked for
 * anything, naming the directory, rather than as a failure to open `<file>.part` after the stream began.
 */
async function checkDestinationFile(path: string): Promise<void> {
  const directory = dirname(path);
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isDirectory()) {
    throw new InvalidInputError(
      `--to ${path} is a directory: give a file path, such as ${join(path, "snapshot.db")}`,
    );
  }
  const parent = await stat(directory).catch(() => undefined);
  if (!parent)
    throw new InvalidInputError(`--to ${path}: directory ${directory} does not exist; create it first`);
  if (!parent.isDirectory()) throw new InvalidInputError(`--to ${path}: ${directory} is not a directory`);
  try {
    await access(directory, constants.W_OK);
  } catch {
    throw new InvalidInputError(`--to ${path}: this user cannot write in directory ${directory}`);
  }
}

/**
 * The member to read — a healthy follower among the endpoints, or among the etcd pods Kubernetes lists —
 * and its peers, asked for their HashKV once the snapshot is verified.
 */
async function openCommandSource(
  access: CommandAccess,
  flags: SnapshotCommandFlags,
  tls: EtcdTlsMaterial | undefined,
): Promise<{ source: SnapshotSource; peers: LazyMember[] }> {
  if (access.kind === "endpoints") {
    const member = await chooseSnapshotMember(access.endpoints, { tls });
    const peers = access.endpoints
      .filter((endpoint) => endpoint !== member.client.endpoint)
      .map((endpoint) =>
        lazyMember(endpoint, async () => createGrpcSnapshotSource(createEtcdClient({ endpoint, tls }))),
      );
    return { source: createGrpcSnapshotSource(member.client), peers };
  }
  const config =
    access.kind === "kubeconfig"
      ? await kubeConfigFromFile(access.path, access.context)
      : await createEksKubeConfig({ clusterName: access.clusterName, region: access.region });
  const members = presetMemberSelector({
    preset: flags.preset ?? "kubeadm",
    release: flags.release,
    namespace: flags.namespace,
    selector: flags.selector,
    container: flags.container,
  });
  if ("problem" in members)
    throw new InvalidInputError(`--preset ${flags.preset}: ${members.problem} (--namespace, --release)`);
  const sourceKind = flags.source ?? (flags.preset === "bitnami" ? "exec" : "grpc");
  if (sourceKind === "exec" && tls) {
    throw new InvalidInputError(
      "--cacert/--cert/--key are files on this machine, for the grpc source: the exec source uses the etcd pod's own certificate files",
    );
  }
  const discovered = await discoverEtcdMembers(config, members);
  const settings = {
    source: sourceKind,
    tls,
    onWarning: (warning: CertificateExpiryWarning) =>
      process.stderr.write(`etcd-backup: warning: ${warning.message}\n`),
  };
  const chosen = await chooseKubernetesMember(config, discovered, settings);
  const peers = readyPeersOf(discovered.members, chosen.member).map((peer) =>
    lazyMember(
      describeMemberReach({
        endpoint: peer.localClientUrl,
        source: sourceKind,
        pod: { namespace: peer.namespace, name: peer.podName, container: peer.container },
      }),
      () => openMemberSnapshotSource(config, peer, { ...settings, onWarning: () => {} }),
    ),
  );
  return { source: chosen.source, peers };
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
    ...(result.memberHash ? [`  hashkv     ${describeMemberHashCheck(result.memberHash)}`] : []),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}
