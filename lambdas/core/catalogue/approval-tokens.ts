// The task token a restore waits on, kept in the catalogue table under the execution's name, so that
// `etcd-backup approve <execution>` needs nothing else and the approvers' message carries no credential.
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DeleteCommand, GetCommand, PutCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { SnapshotNotFoundError } from "../errors.js";
import { approvalsPartition, CatalogueTable } from "./catalogue-table.js";
import { type CatalogueDocuments, createDocumentClient } from "./dynamodb-documents.js";

export const approvalSortKeyPrefix = "approval#";

/** The error a rejected approval ends the waiting task with (SendTaskFailure's `error`). */
export const approvalRejectedError = "RestoreRejected";

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
  /**
   * Locally only, where no Step Functions service takes SendTaskSuccess: the answer `approve|reject`
   * records here, which the local waiting step polls for.
   */
  answer?: ApprovalAnswer;
}

export interface ApprovalAnswer {
  approved: boolean;
  by: string;
  reason?: string;
  answeredAt: string;
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
        Item: { ...this.key(approval.executionName), ...approval },
      }),
    );
  }

  async find(executionName: string): Promise<PendingApproval> {
    const reply = await this.documents.send(
      new GetCommand({
        TableName: this.options.tableName,
        Key: this.key(executionName),
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

  /** Records a person's answer on the waiting approval; refused when none waits under that name. */
  async recordAnswer(
    executionName: string,
    decision: Omit<ApprovalAnswer, "answeredAt">,
    now = new Date(),
  ): Promise<void> {
    const answer: ApprovalAnswer = { ...decision, answeredAt: now.toISOString() };
    try {
      await this.documents.send(
        new UpdateCommand({
          TableName: this.options.tableName,
          Key: this.key(executionName),
          UpdateExpression: "SET #answer = :answer",
          ConditionExpression: "attribute_exists(#sort) AND attribute_not_exists(#answer)",
          ExpressionAttributeNames: { "#answer": "answer", "#sort": CatalogueTable.sortKey.name },
          ExpressionAttributeValues: { ":answer": answer },
        }),
      );
    } catch (error) {
      if ((error as Error).name !== "ConditionalCheckFailedException") throw error;
      throw new SnapshotNotFoundError(
        `no restore is waiting for approval under execution "${executionName}" (or it was answered already)`,
      );
    }
  }

  async remove(executionName: string): Promise<void> {
    await this.documents.send(
      new DeleteCommand({
        TableName: this.options.tableName,
        Key: this.key(executionName),
      }),
    );
  }

  private key(executionName: string) {
    return {
      [CatalogueTable.partitionKey.name]: approvalsPartition,
      [CatalogueTable.sortKey.name]: `${approvalSortKeyPrefix}${executionName}`,
    };
  }
}
