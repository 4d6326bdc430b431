// The catalogue table's shape, independent of its name: the CDK stack builds the same table from these
// constants, and local mode (dynalite) creates it with `createCatalogueTable`.
import {
  CreateTableCommand,
  type DynamoDBClient,
  ResourceInUseException,
  waitUntilTableExists,
} from "@aws-sdk/client-dynamodb";

/**
 * One table holds every kind of item of a cluster under the cluster's partition, told apart by the sort
 * key's prefix: `snapshot#<snapshotId>` rows and the single `lease` item (later kinds add prefixes of
 * their own, so list queries always use `begins_with`).
 */
export const CatalogueTable = {
  partitionKey: { name: "cluster", type: "S" },
  sortKey: { name: "sk", type: "S" },
  /** Epoch seconds; DynamoDB's TTL on AWS. Only DELETED rows carry it, and nothing depends on it. */
  timeToLiveAttribute: "expiresAt",
  /**
   * Sparse index of VERIFIED rows only: its partition attribute is written when a row becomes VERIFIED
   * and removed when it leaves that state, so the newest verified snapshot is one Query, Limit 1.
   */
  verifiedByClusterIndex: {
    indexName: "verified-by-cluster",
    partitionKey: { name: "verifiedCluster", type: "S" },
    sortKey: { name: "snapshotId", type: "S" },
    projection: "ALL",
  },
} as const;

export const SortKeyPrefixes = {
  snapshot: "snapshot#",
} as const;

/** The sort key of a cluster's lease item. */
export const leaseSortKey = "lease";

/** Pending restore approvals are looked up by execution name alone: one fixed partition, shared by every cluster. */
export const approvalsPartition = "#approvals";

export function snapshotSortKey(snapshotId: string): string {
  return `${SortKeyPrefixes.snapshot}${snapshotId}`;
}

/** Creates the catalogue table (on-demand, with its index) unless it exists, and waits until it is active. */
export async function createCatalogueTable(client: DynamoDBClient, tableName: string): Promise<void> {
  const { partitionKey, sortKey, verifiedByClusterIndex: index } = CatalogueTable;
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: "PAY_PER_REQUEST",
        AttributeDefinitions: [
          { AttributeName: partitionKey.name, AttributeType: partitionKey.type },
          { AttributeName: sortKey.name, AttributeType: sortKey.type },
          { AttributeName: index.partitionKey.name, AttributeType: index.partitionKey.type },
          { AttributeName: index.sortKey.name, AttributeType: index.sortKey.type },
        ],
        KeySchema: [
          { AttributeName: partitionKey.name, KeyType: "HASH" },
          { AttributeName: sortKey.name, KeyType: "RANGE" },
        ],
        GlobalSecondaryIndexes: [
          {
            IndexName: index.indexName,
            KeySchema: [
              { AttributeName: index.partitionKey.name, KeyType: "HASH" },
              { AttributeName: index.sortKey.name, KeyType: "RANGE" },
            ],
            Projection: { ProjectionType: index.projection },
          },
        ],
      }),
    );
  } catch (error) {
    if (!(error instanceof ResourceInUseException)) throw error;
  }
  await waitUntilTableExists({ client, maxWaitTime: 60, minDelay: 1, maxDelay: 2 }, { TableName: tableName });
}
