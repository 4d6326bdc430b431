// The task token a restore waits on, kept in the catalogue table under the execution's name, so that
// `etcd-backup approve <execution>` needs nothing else and the approvers' message carries no credential.
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DeleteCommand, GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { SnapshotNotFoundError } from "../errors.js";
import { approvalsPartition, CatalogueTable } from "./catalogue-table.js";
import { type CatalogueDocuments, createDocumentClient } from "./dynamodb-documents.js";

export const approvalSortKeyPrefix = "approval#";

export interface PendingApproval {
  /** The cluster to restore (not `cluster`, which is the table's partition key). */
  targetCluster: string;
  executionName: string;
  executionArn: string;
  taskToken: string;
  snapshotId: string;
  requestedAt: string;
  /** Epoch seconds: the approval timeout; DynamoDB TTL removes the item afterwards on AWS. */
  expiresAt: number;
}

export class ApprovalTokens {
  private readonly documents: CatalogueDocuments;

  constructor(private readonly options: { client: DynamoDBClient; tableName: string }) {
    this.documents = createDocumentClient(options.client);
  }

  async save(approval: PendingApproval): Promise<void> {
    await this.documents.send(
      new PutCommand({
        TableName: this.options.tableName,
        Item: {
          [CatalogueTable.partitionKey.name]: approvalsPartition,
          [CatalogueTable.sortKey.name]: `${approvalSortKeyPrefix}${approval.executionName}`,
          ...approval,
        },
      }),
    );
  }

  async find(executionName: string): Promise<PendingApproval> {
    const reply = await this.documents.send(
      new GetCommand({
        TableName: this.options.tableName,
        Key: {
          [CatalogueTable.partitionKey.name]: approvalsPartition,
          [CatalogueTable.sortKey.name]: `${approvalSortKeyPrefix}${executionName}`,
        },
        ConsistentRead: true,
      }),
    );
    if (!reply.Item) {
      throw new SnapshotNotFoundError(
        `no restore is waiting for approval under execution "${executionName}"`,
      );
    }
    const {
      [CatalogueTable.partitionKey.name]: _partition,
      [CatalogueTable.sortKey.name]: _sort,
      ...approval
    } = reply.Item;
    return approval as PendingApproval;
  }

  async remove(executionName: string): Promise<void> {
    await this.documents.send(
      new DeleteCommand({
        TableName: this.options.tableName,
        Key: {
          [CatalogueTable.partitionKey.name]: approvalsPartition,
          [CatalogueTable.sortKey.name]: `${approvalSortKeyPrefix}${executionName}`,
        },
      }),
    );
  }
}
