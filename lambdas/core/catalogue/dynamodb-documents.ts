// The document client both repositories use, and the one AWS error they interpret themselves.
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { InvalidInputError } from "../errors.js";

export function createDocumentClient(client: DynamoDBClient): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true },
  });
}

/** A conditional write was refused: the item was not in the state the write required. */
export function isConditionalCheckFailure(error: unknown): boolean {
  return error instanceof Error && error.name === "ConditionalCheckFailedException";
}

export function requireText(field: string, value: string): void {
  if (typeof value !== "string" || value.trim() === "")
    throw new InvalidInputError(`${field} must be a non-empty string`);
}
