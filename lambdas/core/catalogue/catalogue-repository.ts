// The snapshot catalogue: one row per snapshot, moved through its statuses by conditional writes.
// Each write states the status it expects; when DynamoDB refuses it, a consistent read decides whether
// the call was a retry of a write that already happened (a no-op) or a real conflict. No transactions
// and no TTL are needed for correctness (dynalite has neither).
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  GetCommand,
  PutCommand,
  QueryCommand,
  type QueryCommandInput,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { CatalogueConflictError, InvalidInputError } from "../errors.js";
import type { MemberHashCheck } from "../snapshot/member-hash-check.js";
import { CatalogueTable, SortKeyPrefixes, snapshotSortKey } from "./catalogue-table.js";
import {
  type CatalogueDocuments,
  createDocumentClient,
  isConditionalCheckFailure,
  requireText,
} from "./dynamodb-documents.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import {
  type SnapshotKvHashFigure,
  type SnapshotRecord,
  SnapshotStatus,
  snapshotStatuses,
  type VerifiedSnapshotRecord,
} from "./snapshot-record.js";
import { attributeNamesIn, buildConditionalUpdate, valueList } from "./update-expression.js";

export interface CatalogueRepositoryOptions {
  client: DynamoDBClient;
  tableName: string;
}

export interface RecordStartedInput {
  cluster: string;
  snapshotId: string;
  bucket: string;
  key: string;
  sourceMember: string;
  etcdVersion?: string;
  startedAt: Date;
  /** Identifies the run: a repeated call with the same execution is a retry, any other is a conflict. */
  executionArn?: string;
  retentionTier?: string;
  tags?: readonly string[];
}

export interface RecordUploadedInput {
  cluster: string;
  snapshotId: string;
  versionId?: string;
  bytes: number;
  sha256: string;
  completedAt: Date;
  durationMs: number;
  /** The version the member reported: what a retried step that finds the row already UPLOADED passes on. */
  etcdVersion?: string;
}

export interface RecordVerifiedInput {
  cluster: string;
  snapshotId: string;
  /** The sha256 the verifier computed from the stored object; when given, it must equal the uploaded one. */
  sha256?: string;
  revision: number;
  totalKey: number;
  liveKeyCount: number;
  memberHash?: MemberHashCheck | undefined;
  kvHash?: SnapshotKvHashFigure;
  etcdVersion?: string;
  verifiedAt: Date;
}

export interface RecordFailedInput {
  cluster: string;
  snapshotId: string;
  errorName: string;
  message: string;
  failedAt: Date;
}

export interface RecordDeletedInput {
  cluster: string;
  snapshotId: string;
  deletedAt: Date;
  /** Epoch seconds after which DynamoDB's TTL may remove the tombstone (on AWS only). */
  expiresAt?: number;
}

export interface TransitionResult {
  record: SnapshotRecord;
  /** False when the row was already in the requested state: the call was a retry and changed nothing. */
  changed: boolean;
}

export interface ListSnapshotsOptions {
  /** Rows per page, 1 to 1000; 50 unless given. */
  limit?: number;
  nextToken?: string;
  status?: SnapshotStatus | readonly SnapshotStatus[];
}

export interface SnapshotPage {
  /** Newest first. Fewer than `limit` with a `nextToken` means the listing goes on. */
  snapshots: SnapshotRecord[];
  nextToken?: string;
}

const defaultPageLimit = 50;
const maxPageLimit = 1000;
/** Rows read per Query when a status filter may discard most of them. */
const filteredQueryPageSize = 200;
/** Bounds the work of one filtered page; the caller continues with the token. */
const maxQueriesPerPage = 10;
const maxFailureMessageLength = 4000;

/** Attributes stored on a row that are not part of its record. */
const storageOnlyAttributes = [
  CatalogueTable.sortKey.name,
  CatalogueTable.verifiedByClusterIndex.partitionKey.name,
];

export class CatalogueRepository {
  private readonly documents: CatalogueDocuments;
  private readonly tableName: string;

  constructor(options: CatalogueRepositoryOptions) {
    this.documents = createDocumentClient(options.client);
    this.tableName = options.tableName;
  }

  /** Catalogues a new snapshot as IN_PROGRESS. */
  async recordStarted(input: RecordStartedInput): Promise<TransitionResult> {
    for (const field of ["cluster", "snapshotId", "bucket", "key", "sourceMember"] as const) {
      requireText(field, input[field]);
    }
    const record: SnapshotRecord = {
      cluster: input.cluster,
      snapshotId: input.snapshotId,
      status: SnapshotStatus.InProgress,
      bucket: input.bucket,
      key: input.key,
      sourceMember: input.sourceMember,
      etcdVersion: input.etcdVersion,
      startedAt: input.startedAt.toISOString(),
      executionArn: input.executionArn,
      retentionTier: input.retentionTier,
      tags: [...(input.tags ?? [])],
    };
    const condition = "attribute_not_exists(#sk)";
    try {
      await this.documents.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...record, sk: snapshotSortKey(input.snapshotId) },
          ConditionExpression: condition,
          ExpressionAttributeNames: attributeNamesIn(condition),
        }),
      );
      return { record: withoutUndefined(record), changed: true };
    } catch (error) {
      if (!isConditionalCheckFailure(error)) throw error;
      const existing = await this.getSnapshot(input.cluster, input.snapshotId);
      if (
        existing !== undefined &&
        existing.executionArn === input.executionArn &&
        existing.bucket === input.bucket &&
        existing.key === input.key
      ) {
        return { record: existing, changed: false };
      }
      const state =
        existing === undefined
          ? ""
          : ` (${existing.status}, ${existing.executionArn === undefined ? "no execution" : `execution ${existing.executionArn}`}, s3://${existing.bucket}/${existing.key})`;
      throw new CatalogueConflictError(
        `snapshot ${input.snapshotId} of cluster ${input.cluster} is already catalogued${state}`,
        { cause: error },
      );
    }
  }

  /** IN_PROGRESS → UPLOADED. Repeating it with the same sha256 is a no-op. */
  recordUploaded(input: RecordUploadedInput): Promise<TransitionResult> {
    requireText("sha256", input.sha256);
    return this.transition({
      cluster: input.cluster,
      snapshotId: input.snapshotId,
      to: SnapshotStatus.Uploaded,
      from: [SnapshotStatus.InProgress],
      set: {
        versionId: input.versionId,
        bytes: input.bytes,
        sha256: input.sha256,
        completedAt: input.completedAt.toISOString(),
        durationMs: input.durationMs,
        ...(input.etcdVersion ? { etcdVersion: input.etcdVersion } : {}),
      },
      isRepeat: (existing) => existing.status === SnapshotStatus.Uploaded && existing.sha256 === input.sha256,
      explain: (existing) =>
        existing.status === SnapshotStatus.Uploaded
          ? `with sha256 ${existing.sha256}, not ${input.sha256}`
          : undefined,
    });
  }

  /** UPLOADED → VERIFIED, with the figures read back from the stored object. Repeating it is a no-op. */
  recordVerified(input: RecordVerifiedInput): Promise<TransitionResult> {
    const sameFigures = (existing: SnapshotRecord) =>
      existing.revision === input.revision &&
      existing.totalKey === input.totalKey &&
      existing.liveKeyCount === input.liveKeyCount &&
      (input.sha256 === undefined || existing.sha256 === input.sha256);
    return this.transition({
      cluster: input.cluster,
      snapshotId: input.snapshotId,
      to: SnapshotStatus.Verified,
      from: [SnapshotStatus.Uploaded],
      set: {
        revision: input.revision,
        totalKey: input.totalKey,
        liveKeyCount: input.liveKeyCount,
        ...(input.memberHash ? { memberHash: input.memberHash } : {}),
        ...(input.kvHash ? { kvHash: input.kvHash } : {}),
        etcdVersion: input.etcdVersion,
        verifiedAt: input.verifiedAt.toISOString(),
        [CatalogueTable.verifiedByClusterIndex.partitionKey.name]: input.cluster,
      },
      ...(input.sha256 === undefined
        ? {}
        : {
            condition: {
              expression: "#sha256 = :verifiedSha256",
              values: { ":verifiedSha256": input.sha256 },
            },
          }),
      isRepeat: (existing) => existing.status === SnapshotStatus.Verified && sameFigures(existing),
      explain: (existing) => {
        if (existing.status === SnapshotStatus.Uploaded) {
          return `the uploaded sha256 is ${existing.sha256}, the verified one ${input.sha256}`;
        }
        if (existing.status === SnapshotStatus.Verified) {
          return `verified as revision ${existing.revision}, totalKey ${existing.totalKey}, liveKeyCount ${existing.liveKeyCount}, sha256 ${existing.sha256}`;
        }
        return undefined;
      },
    });
  }

  /** IN_PROGRESS or UPLOADED → FAILED. Repeating it is a no-op that keeps the first failure. */
  recordFailed(input: RecordFailedInput): Promise<TransitionResult> {
    requireText("errorName", input.errorName);
    return this.transition({
      cluster: input.cluster,
      snapshotId: input.snapshotId,
      to: SnapshotStatus.Failed,
      from: [SnapshotStatus.InProgress, SnapshotStatus.Uploaded],
      set: {
        failure: { errorName: input.errorName, message: truncate(input.message, maxFailureMessageLength) },
        failedAt: input.failedAt.toISOString(),
      },
      isRepeat: (existing) => existing.status === SnapshotStatus.Failed,
    });
  }

  /**
   * Which retention tiers keep a VERIFIED snapshot, as the latest prune found them (`hourly,daily`): so
   * that `list` and `show` say why a snapshot is still there. A row deleted meanwhile is left as it is.
   */
  recordKeptBy(input: {
    cluster: string;
    snapshotId: string;
    keptBy: readonly string[];
  }): Promise<TransitionResult> {
    const retentionTier = input.keptBy.join(",");
    return this.transition({
      cluster: input.cluster,
      snapshotId: input.snapshotId,
      to: SnapshotStatus.Verified,
      from: [SnapshotStatus.Verified],
      set: { retentionTier },
      // Unchanged, it is not written again.
      condition: {
        expression: "(attribute_not_exists(#retentionTier) OR #retentionTier <> :keptBy)",
        values: { ":keptBy": retentionTier },
      },
      isRepeat: (existing) =>
        existing.status !== SnapshotStatus.Verified || existing.retentionTier === retentionTier,
    });
  }

  /**
   * Keeps a VERIFIED snapshot from retention until `until`, for the restore that chose it: the approval
   * may take days, while scheduled backups go on pruning. A later hold than the one there replaces it.
   */
  holdForRestore(input: {
    cluster: string;
    snapshotId: string;
    execution: string;
    until: Date;
  }): Promise<TransitionResult> {
    const until = input.until.toISOString();
    return this.transition({
      cluster: input.cluster,
      snapshotId: input.snapshotId,
      to: SnapshotStatus.Verified,
      from: [SnapshotStatus.Verified],
      set: { restoreHeldBy: input.execution, restoreHeldUntil: until },
      condition: {
        expression: "(attribute_not_exists(#restoreHeldUntil) OR #restoreHeldUntil < :heldUntil)",
        values: { ":heldUntil": until },
      },
      isRepeat: (existing) =>
        existing.status === SnapshotStatus.Verified && (existing.restoreHeldUntil ?? "") >= until,
    });
  }

  /** VERIFIED or FAILED → DELETED, once the object version is gone. Repeating it is a no-op. */
  recordDeleted(input: RecordDeletedInput): Promise<TransitionResult> {
    return this.transition({
      cluster: input.cluster,
      snapshotId: input.snapshotId,
      to: SnapshotStatus.Deleted,
      from: [SnapshotStatus.Verified, SnapshotStatus.Failed],
      set: {
        deletedAt: input.deletedAt.toISOString(),
        [CatalogueTable.timeToLiveAttribute]: input.expiresAt,
      },
      // Nothing keeps it any more: a DELETED row saying which tiers keep it would contradict itself.
      remove: [CatalogueTable.verifiedByClusterIndex.partitionKey.name, "retentionTier"],
      isRepeat: (existing) => existing.status === SnapshotStatus.Deleted,
    });
  }

  /** A strongly consistent read of one row. */
  async getSnapshot(cluster: string, snapshotId: string): Promise<SnapshotRecord | undefined> {
    const { Item } = await this.documents.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { cluster, sk: snapshotSortKey(snapshotId) },
        ConsistentRead: true,
      }),
    );
    return Item === undefined ? undefined : toSnapshotRecord(Item);
  }

  /**
   * The newest VERIFIED snapshot, in one Query of the sparse index. The index is eventually consistent
   * on AWS (a row verified or deleted a moment ago may not show yet): confirm with `getSnapshot` where
   * that matters.
   */
  async findLatestVerified(cluster: string): Promise<VerifiedSnapshotRecord | undefined> {
    const index = CatalogueTable.verifiedByClusterIndex;
    const keyCondition = `#${index.partitionKey.name} = :cluster`;
    const { Items } = await this.documents.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: index.indexName,
        KeyConditionExpression: keyCondition,
        ExpressionAttributeNames: attributeNamesIn(keyCondition),
        ExpressionAttributeValues: { ":cluster": cluster },
        ScanIndexForward: false,
        Limit: 1,
      }),
    );
    const item = Items?.[0];
    return item === undefined ? undefined : (toSnapshotRecord(item) as VerifiedSnapshotRecord);
  }

  /** A cluster's snapshots, newest first, a page at a time, optionally only those in the given statuses. */
  async listSnapshots(cluster: string, options: ListSnapshotsOptions = {}): Promise<SnapshotPage> {
    const limit = options.limit ?? defaultPageLimit;
    if (!Number.isInteger(limit) || limit < 1 || limit > maxPageLimit) {
      throw new InvalidInputError(`limit must be an integer from 1 to ${maxPageLimit}, not ${limit}`);
    }
    const statuses = options.status === undefined ? undefined : [options.status].flat();
    for (const status of statuses ?? []) {
      if (!snapshotStatuses.includes(status))
        throw new InvalidInputError(
          `unknown snapshot status ${status}: expected one of ${snapshotStatuses.join(", ")}`,
        );
    }
    const keyCondition = "#cluster = :cluster AND begins_with(#sk, :snapshotPrefix)";
    const statusList = statuses === undefined ? undefined : valueList("status", statuses);
    const filter = statusList === undefined ? undefined : `#status IN ${statusList.list}`;
    const query: QueryCommandInput = {
      TableName: this.tableName,
      KeyConditionExpression: keyCondition,
      ...(filter === undefined ? {} : { FilterExpression: filter }),
      ExpressionAttributeNames: attributeNamesIn(keyCondition, filter),
      ExpressionAttributeValues: {
        ":cluster": cluster,
        ":snapshotPrefix": SortKeyPrefixes.snapshot,
        ...statusList?.values,
      },
      ScanIndexForward: false,
      ConsistentRead: true,
      // One row more than the page shows whether another page exists, without an empty last page.
      Limit: filter === undefined ? limit + 1 : Math.max(limit + 1, filteredQueryPageSize),
    };

    let startKey: Record<string, unknown> | undefined =
      options.nextToken === undefined ? undefined : { ...decodePageToken(options.nextToken, cluster) };
    const found: Record<string, unknown>[] = [];
    for (let queries = 0; queries < maxQueriesPerPage; queries++) {
      const response = await this.documents.send(new QueryCommand({ ...query, ExclusiveStartKey: startKey }));
      found.push(...(response.Items ?? []));
      if (found.length > limit) {
        // The token points after the last row shown, not after the last row read, so nothing is skipped.
        const page = found.slice(0, limit);
        const last = page[limit - 1] as Record<string, unknown>;
        return {
          snapshots: page.map(toSnapshotRecord),
          nextToken: encodePageToken({ cluster, sk: String(last.sk) }),
        };
      }
      startKey = response.LastEvaluatedKey;
      if (startKey === undefined) return { snapshots: found.map(toSnapshotRecord) };
    }
    return {
      snapshots: found.map(toSnapshotRecord),
      nextToken: encodePageToken({ cluster, sk: String(startKey?.sk) }),
    };
  }

  private async transition(request: {
    cluster: string;
    snapshotId: string;
    to: SnapshotStatus;
    from: readonly SnapshotStatus[];
    set: Record<string, unknown>;
    remove?: readonly string[];
    condition?: { expression: string; values: Record<string, unknown> };
    /** Whether a row the write refused already holds what this call would have written. */
    isRepeat(existing: SnapshotRecord): boolean;
    /** Detail for the conflict message, e.g. which figures differ. */
    explain?(existing: SnapshotRecord): string | undefined;
  }): Promise<TransitionResult> {
    const { cluster, snapshotId, to } = request;
    requireText("cluster", cluster);
    requireText("snapshotId", snapshotId);
    const from = valueList("from", request.from);
    const condition = [`attribute_exists(#sk) AND #status IN ${from.list}`, request.condition?.expression]
      .filter((part) => part !== undefined)
      .join(" AND ");
    const update = buildConditionalUpdate({
      set: { ...request.set, status: to },
      remove: request.remove,
      condition,
      conditionValues: { ...from.values, ...request.condition?.values },
    });
    try {
      const { Attributes } = await this.documents.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { cluster, sk: snapshotSortKey(snapshotId) },
          ...update,
          ReturnValues: "ALL_NEW",
        }),
      );
      return { record: toSnapshotRecord(Attributes ?? {}), changed: true };
    } catch (error) {
      if (!isConditionalCheckFailure(error)) throw error;
      const existing = await this.getSnapshot(cluster, snapshotId);
      if (existing === undefined) {
        throw new CatalogueConflictError(
          `cannot record ${to} for snapshot ${snapshotId} of cluster ${cluster}: it is not catalogued`,
          { cause: error },
        );
      }
      if (request.isRepeat(existing)) return { record: existing, changed: false };
      const detail = request.explain?.(existing);
      throw new CatalogueConflictError(
        `cannot record ${to} for snapshot ${snapshotId} of cluster ${cluster}: it is ${existing.status}` +
          (detail === undefined ? "" : `, ${detail}`),
        { cause: error },
      );
    }
  }
}

function toSnapshotRecord(item: Record<string, unknown>): SnapshotRecord {
  const record: Record<string, unknown> = { ...item };
  for (const attribute of storageOnlyAttributes) delete record[attribute];
  record.tags ??= [];
  return record as unknown as SnapshotRecord;
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as T;
}

function truncate(text: string, maxLength: number): string {
  return text.length <= maxLength ? text : `${text.slice(0, maxLength - 1)}…`;
}
