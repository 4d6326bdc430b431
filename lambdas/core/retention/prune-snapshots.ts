// Applies a retention plan. For each snapshot to delete, the catalogued object *version* goes first and
// the row is marked DELETED after — never the other way round, so the catalogue never lists as deleted
// bytes that still exist, nor as present bytes it let go of. A version under S3 Object Lock, whose
// deletion S3 refuses, is retained and reported; that is the lock doing its job, not an error.
// Every step is idempotent: a retried prune finds deleted versions gone and DELETED rows unchanged.
import {
  DeleteObjectCommand,
  GetObjectLegalHoldCommand,
  GetObjectRetentionCommand,
  HeadObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import type { CatalogueRepository } from "../catalogue/catalogue-repository.js";
import { type SnapshotRecord, SnapshotStatus } from "../catalogue/snapshot-record.js";
import { describeError, EtcdBackupError } from "../errors.js";
import { abortOpenUploads } from "../store/abort-open-uploads.js";
import { storageError } from "../store/s3-errors.js";
import type { DeleteReason, RetentionPlan } from "./retention-policy.js";

export interface PruneContext {
  s3: S3Client;
  catalogue: Pick<CatalogueRepository, "recordDeleted" | "recordFailed" | "recordKeptBy">;
  now(): Date;
}

/** The small JSON the state machine keeps: what went, what Object Lock held back, how many stay. */
export interface PruneSummary {
  deleted: Array<{ snapshotId: string; reason: DeleteReason }>;
  retained: Array<{ snapshotId: string; reason: string }>;
  kept: number;
}

export interface PruneFailure {
  snapshotId: string;
  error: unknown;
}

/** The error name the catalogue gives a run that stopped without its Catch (aborted or timed out). */
export const abandonedRunErrorName = "AbandonedRun";

/** How long a DELETED row stays for the record before DynamoDB's TTL may remove it (on AWS). */
const tombstoneDays = 30;

/**
 * Deletes what the plan says to delete, each snapshot on its own: one that fails does not stop the
 * others, and is returned in `failures` (its row left as it was) for the caller to report and throw.
 */
export async function applyRetentionPlan(
  context: PruneContext,
  records: readonly SnapshotRecord[],
  plan: RetentionPlan,
): Promise<{ summary: PruneSummary; failures: PruneFailure[] }> {
  const byId = new Map(records.map((record) => [record.snapshotId, record]));
  const summary: PruneSummary = { deleted: [], retained: [], kept: plan.keep.length };
  const failures: PruneFailure[] = [];
  for (const { snapshotId, reason } of plan.delete) {
    const record = byId.get(snapshotId);
    if (record === undefined) {
      failures.push({
        snapshotId,
        error: new Error(`snapshot ${snapshotId} is in the plan but not in the rows`),
      });
      continue;
    }
    try {
      const outcome = await pruneSnapshot(context, record);
      if (outcome.retainedBecause === undefined) summary.deleted.push({ snapshotId, reason });
      else summary.retained.push({ snapshotId, reason: outcome.retainedBecause });
    } catch (error) {
      failures.push({ snapshotId, error });
    }
  }
  // What keeps each snapshot, on its row, written only where it changed.
  for (const { snapshotId, reasons } of plan.keep) {
    const record = byId.get(snapshotId);
    if (record?.status !== SnapshotStatus.Verified || record.retentionTier === reasons.join(",")) continue;
    try {
      await context.catalogue.recordKeptBy({ cluster: record.cluster, snapshotId, keptBy: reasons });
    } catch (error) {
      failures.push({ snapshotId, error });
    }
  }
  return { summary, failures };
}

/** One error for the snapshots that could not be pruned, named after the first so that Retry matches it. */
export function pruneFailureError(failures: readonly PruneFailure[], deletedCount: number): Error {
  const [first] = failures;
  if (first === undefined) throw new Error("no failures to report");
  if (failures.length === 1 && first.error instanceof Error) return first.error;
  const message =
    `${failures.length} snapshot(s) could not be pruned (${deletedCount} were): ` +
    failures
      .slice(0, 5)
      .map((failure) => `${failure.snapshotId}: ${describeError(failure.error)}`)
      .join("; ") +
    (failures.length > 5 ? "; …" : "");
  if (first.error instanceof EtcdBackupError) {
    const NamedError = first.error.constructor as new (message: string, options?: ErrorOptions) => Error;
    return new NamedError(message, { cause: first.error });
  }
  return new Error(message, { cause: first.error });
}

async function pruneSnapshot(
  context: PruneContext,
  record: SnapshotRecord,
): Promise<{ retainedBecause?: string }> {
  const { s3, catalogue } = context;
  const { cluster, snapshotId } = record;
  if (record.status === SnapshotStatus.InProgress || record.status === SnapshotStatus.Uploaded) {
    // Only FAILED (or VERIFIED) rows may become DELETED; this also stops a run that was in fact still
    // alive from ever cataloguing its snapshot afterwards.
    await catalogue.recordFailed({
      cluster,
      snapshotId,
      errorName: abandonedRunErrorName,
      message: `the run stopped without finishing (status ${record.status}); cleaned up by retention`,
      // When it was last heard of: the grace period has run from then, and a retry must not restart it.
      failedAt: new Date(record.completedAt ?? record.startedAt),
    });
  }
  if (record.status !== SnapshotStatus.Verified) await abortOpenUploads(s3, record.bucket, record.key);

  const removal = await deleteObjectVersion(s3, record, context.now());
  if (removal.retainedBecause !== undefined) return removal;

  const deletedAt = context.now();
  await catalogue.recordDeleted({
    cluster,
    snapshotId,
    deletedAt,
    expiresAt: Math.floor(deletedAt.getTime() / 1000) + tombstoneDays * 24 * 3600,
  });
  return {};
}

/**
 * Deletes the row's object version. A row without a version id (an unversioned bucket, or a run that
 * failed before cataloguing its upload) is looked up first: nothing there means nothing to delete, and
 * on a versioned bucket the current version is deleted by its id rather than hidden by a delete marker.
 */
async function deleteObjectVersion(
  s3: S3Client,
  record: SnapshotRecord,
  now: Date,
): Promise<{ retainedBecause?: string }> {
  const { bucket: Bucket, key: Key } = record;
  const location = `s3://${Bucket}/${Key}`;
  let versionId = record.versionId;
  if (versionId === undefined) {
    try {
      versionId = (await s3.send(new HeadObjectCommand({ Bucket, Key }))).VersionId;
    } catch (error) {
      if (isNotFound(error)) return {};
      throw storageError(`looking up ${location} failed`, error);
    }
  }
  const version = versionId === undefined ? {} : { VersionId: versionId };
  try {
    await s3.send(new DeleteObjectCommand({ Bucket, Key, ...version }));
    return {};
  } catch (error) {
    if (isNotFound(error)) return {};
    const lock = await describeObjectLockRefusal(s3, { Bucket, Key, ...version }, error, now);
    if (lock !== undefined) return { retainedBecause: lock };
    const what = versionId === undefined ? location : `${location} version ${versionId}`;
    throw storageError(`deleting ${what} failed`, error);
  }
}

/**
 * S3 refuses to delete a version under Object Lock retention or legal hold with 403 AccessDenied,
 * "Access Denied because object protected by object lock". A 403 that does not say so may be IAM; the
 * version's retention and legal hold then tell the two apart. Undefined when the lock is not the cause.
 */
async function describeObjectLockRefusal(
  s3: S3Client,
  version: { Bucket: string; Key: string; VersionId?: string },
  error: unknown,
  now: Date,
): Promise<string | undefined> {
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const name = error instanceof Error ? error.name : "";
  const message = error instanceof Error ? error.message : "";
  if (status !== 403 && name !== "AccessDenied" && name !== "InvalidRequest") return undefined;
  if (/object lock|worm/i.test(message)) return `Object Lock refused the deletion: ${message}`;
  if (status !== 403 && name !== "AccessDenied") return undefined;

  const [retention, legalHold] = await Promise.all([
    s3.send(new GetObjectRetentionCommand(version)).catch(() => undefined),
    s3.send(new GetObjectLegalHoldCommand(version)).catch(() => undefined),
  ]);
  const until = retention?.Retention?.RetainUntilDate;
  if (retention?.Retention?.Mode !== undefined && until !== undefined && until.getTime() > now.getTime()) {
    return `Object Lock ${retention.Retention.Mode} retention until ${until.toISOString()}`;
  }
  if (legalHold?.LegalHold?.Status === "ON") return "Object Lock legal hold";
  return undefined;
}

function isNotFound(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (["NoSuchKey", "NoSuchVersion", "NotFound", "NoSuchUpload"].includes(error.name)) return true;
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404;
}
