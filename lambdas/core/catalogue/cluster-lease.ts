// One lease item per cluster keeps a backup and a restore from running at once. Its expiry is checked
// inside the conditional write, not left to TTL: an aborted or timed-out execution runs no Catch and
// dynalite has no TTL, so a dead owner's lease must lapse by itself. The item also remembers the last
// schedule tick that took it, so that a duplicate start for the same tick does nothing.
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { GetCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { InvalidInputError, LeaseHeldError } from "../errors.js";
import { leaseSortKey } from "./catalogue-table.js";
import {
  type CatalogueDocuments,
  createDocumentClient,
  isConditionalCheckFailure,
  requireText,
} from "./dynamodb-documents.js";
import { buildConditionalUpdate } from "./update-expression.js";

export interface ClusterLeasesOptions {
  client: DynamoDBClient;
  tableName: string;
}

export interface AcquireLeaseInput {
  cluster: string;
  /** The execution ARN or name that will hold the lease. */
  owner: string;
  ttlSeconds: number;
  now: Date;
  /** The schedule tick that started the run (EventBridge Scheduler's ISO 8601 scheduled time). */
  scheduledTime?: string;
}

export type AcquireLeaseResult =
  | {
      acquired: true;
      duplicate: false;
      /** The owner held it already (a retry, or a restore's safety snapshot): the caller must not release it. */
      alreadyHeld: boolean;
      owner: string;
      heldUntil: string;
    }
  | {
      acquired: false;
      /** This tick (or a later one) already took the lease: the run must do nothing. */
      duplicate: true;
      lastScheduledTime: string;
    };

export interface RenewLeaseInput {
  cluster: string;
  owner: string;
  ttlSeconds: number;
  now: Date;
}

export interface ReleaseLeaseInput {
  cluster: string;
  owner: string;
}

export interface ReleaseLeaseResult {
  /** False when the owner did not hold the lease (released already, expired and taken): nothing changed. */
  released: boolean;
  /** Who holds the lease now, when it was not released. */
  holder?: string;
}

export interface LeaseState {
  cluster: string;
  owner?: string;
  heldUntil?: string;
  acquiredAt?: string;
  lastScheduledTime?: string;
}

interface LeaseItem {
  owner?: string;
  heldUntilEpochMs?: number;
  acquiredAt?: string;
  lastScheduledTime?: string;
}

/** Acquisition re-reads and tries again when the lease changes hands between its write and its read. */
const maxAcquireAttempts = 5;

export class ClusterLeases {
  private readonly documents: CatalogueDocuments;
  private readonly tableName: string;

  constructor(options: ClusterLeasesOptions) {
    this.documents = createDocumentClient(options.client);
    this.tableName = options.tableName;
  }

  /**
   * Takes the cluster's lease when it is free, expired, or already this owner's (re-entrant: the lease is
   * then only ever extended). A tick no later than the last one that took the lease is a duplicate.
   * Throws `LeaseHeldError` naming the holder and its expiry otherwise.
   */
  async acquireLease(input: AcquireLeaseInput): Promise<AcquireLeaseResult> {
    const { cluster, owner, now } = input;
    requireText("cluster", cluster);
    requireText("owner", owner);
    const heldUntilEpochMs = now.getTime() + requireTtlMilliseconds(input.ttlSeconds);
    const scheduledTime = input.scheduledTime === undefined ? undefined : normalizeTime(input.scheduledTime);

    for (let attempt = 1; attempt <= maxAcquireAttempts; attempt++) {
      const freeOrExpired = "(attribute_not_exists(#owner) OR #heldUntilEpochMs <= :now)";
      const newTick = "(attribute_not_exists(#lastScheduledTime) OR #lastScheduledTime < :scheduledTime)";
      if (
        await this.conditionalUpdate(cluster, {
          set: { owner, heldUntilEpochMs, acquiredAt: now.toISOString(), lastScheduledTime: scheduledTime },
          condition: scheduledTime === undefined ? freeOrExpired : `${freeOrExpired} AND ${newTick}`,
          conditionValues: {
            ":now": now.getTime(),
            ...(scheduledTime === undefined ? {} : { ":scheduledTime": scheduledTime }),
          },
        })
      ) {
        return {
          acquired: true,
          duplicate: false,
          alreadyHeld: false,
          owner,
          heldUntil: isoTime(heldUntilEpochMs),
        };
      }

      const lease = await this.readLease(cluster);
      if (lease?.owner === owner) {
        const extended = await this.conditionalUpdate(cluster, {
          set: { heldUntilEpochMs },
          condition: "#owner = :owner AND #heldUntilEpochMs < :heldUntilEpochMs",
          conditionValues: { ":owner": owner, ":heldUntilEpochMs": heldUntilEpochMs },
        });
        if (extended)
          return {
            acquired: true,
            duplicate: false,
            alreadyHeld: true,
            owner,
            heldUntil: isoTime(heldUntilEpochMs),
          };
        const current = await this.readLease(cluster);
        if (current?.owner === owner) {
          return {
            acquired: true,
            duplicate: false,
            alreadyHeld: true,
            owner,
            heldUntil: isoTime(current.heldUntilEpochMs ?? heldUntilEpochMs),
          };
        }
        continue;
      }
      if (
        scheduledTime !== undefined &&
        lease?.lastScheduledTime !== undefined &&
        lease.lastScheduledTime >= scheduledTime
      ) {
        return { acquired: false, duplicate: true, lastScheduledTime: lease.lastScheduledTime };
      }
      if (lease?.owner !== undefined && (lease.heldUntilEpochMs ?? 0) > now.getTime()) {
        throw new LeaseHeldError(describeHolder(cluster, lease));
      }
      // Free again by the time it was read: another acquirer came and went. Try once more.
    }
    throw new LeaseHeldError(
      `the lease of cluster ${cluster} kept changing hands; gave up after ${maxAcquireAttempts} attempts`,
    );
  }

  /** Extends the lease its owner holds to `now + ttlSeconds`. Throws `LeaseHeldError` when it is not held. */
  async renewLease(input: RenewLeaseInput): Promise<{ heldUntil: string }> {
    const { cluster, owner } = input;
    requireText("cluster", cluster);
    requireText("owner", owner);
    const heldUntilEpochMs = input.now.getTime() + requireTtlMilliseconds(input.ttlSeconds);
    const renewed = await this.conditionalUpdate(cluster, {
      set: { heldUntilEpochMs },
      condition: "#owner = :owner",
      conditionValues: { ":owner": owner },
    });
    if (renewed) return { heldUntil: isoTime(heldUntilEpochMs) };
    const lease = await this.readLease(cluster);
    throw new LeaseHeldError(
      lease?.owner === undefined
        ? `${owner} cannot renew the lease of cluster ${cluster}: nobody holds it`
        : `${owner} cannot renew: ${describeHolder(cluster, lease)}`,
    );
  }

  /**
   * Gives the lease up if `owner` holds it. The item stays, without owner and expiry, so that the last
   * schedule tick is still remembered. Releasing a lease one does not hold changes nothing.
   */
  async releaseLease(input: ReleaseLeaseInput): Promise<ReleaseLeaseResult> {
    const { cluster, owner } = input;
    requireText("cluster", cluster);
    requireText("owner", owner);
    const released = await this.conditionalUpdate(cluster, {
      remove: ["owner", "heldUntilEpochMs", "acquiredAt"],
      condition: "#owner = :owner",
      conditionValues: { ":owner": owner },
    });
    if (released) return { released: true };
    const holder = (await this.readLease(cluster))?.owner;
    return holder === undefined ? { released: false } : { released: false, holder };
  }

  /** The lease item as stored (strongly consistent), whether or not it has expired. */
  async getLease(cluster: string): Promise<LeaseState | undefined> {
    const item = await this.readLease(cluster);
    if (item === undefined) return undefined;
    return {
      cluster,
      ...(item.owner === undefined ? {} : { owner: item.owner }),
      ...(item.heldUntilEpochMs === undefined ? {} : { heldUntil: isoTime(item.heldUntilEpochMs) }),
      ...(item.acquiredAt === undefined ? {} : { acquiredAt: item.acquiredAt }),
      ...(item.lastScheduledTime === undefined ? {} : { lastScheduledTime: item.lastScheduledTime }),
    };
  }

  /** Applies the update if its condition holds; false when DynamoDB refused it on the condition. */
  private async conditionalUpdate(
    cluster: string,
    changes: Parameters<typeof buildConditionalUpdate>[0],
  ): Promise<boolean> {
    try {
      await this.documents.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { cluster, sk: leaseSortKey },
          ...buildConditionalUpdate(changes),
        }),
      );
      return true;
    } catch (error) {
      if (isConditionalCheckFailure(error)) return false;
      throw error;
    }
  }

  private async readLease(cluster: string): Promise<LeaseItem | undefined> {
    const { Item } = await this.documents.send(
      new GetCommand({ TableName: this.tableName, Key: { cluster, sk: leaseSortKey }, ConsistentRead: true }),
    );
    return Item as LeaseItem | undefined;
  }
}

function describeHolder(cluster: string, lease: LeaseItem): string {
  const until = lease.heldUntilEpochMs === undefined ? "" : ` until ${isoTime(lease.heldUntilEpochMs)}`;
  return `the lease of cluster ${cluster} is held by ${lease.owner}${until}`;
}

function requireTtlMilliseconds(ttlSeconds: number): number {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw new InvalidInputError(`ttlSeconds must be a positive integer, not ${ttlSeconds}`);
  }
  return ttlSeconds * 1000;
}

/** Scheduled times are compared as strings, so they are stored in one canonical form. */
function normalizeTime(time: string): string {
  const parsed = new Date(time);
  if (Number.isNaN(parsed.getTime())) throw new InvalidInputError(`scheduledTime is not a time: ${time}`);
  return parsed.toISOString();
}

function isoTime(epochMilliseconds: number): string {
  return new Date(epochMilliseconds).toISOString();
}
