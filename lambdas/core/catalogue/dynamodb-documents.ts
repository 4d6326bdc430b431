// The document client both repositories use, and the AWS errors they interpret themselves. Every request
// goes through one wrapper that turns an error the SDK's own retries could not get past (throttling, a
// 5xx, the network) into `CatalogueUnavailableError`, the name the state machines retry on.
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { CatalogueUnavailableError, describeError, InvalidInputError } from "../errors.js";

/** What the repositories need of a document client: `send`, with transient failures named. */
export type CatalogueDocuments = Pick<DynamoDBDocumentClient, "send">;

export function createDocumentClient(client: DynamoDBClient): CatalogueDocuments {
  const documents = DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true },
  });
  const send = async (command: Parameters<DynamoDBDocumentClient["send"]>[0]) => {
    try {
      return await documents.send(command);
    } catch (error) {
      if (!isTransientDynamoDbError(error)) throw error;
      throw new CatalogueUnavailableError(
        `the catalogue is unavailable: ${command.constructor.name} failed: ${describeError(error)}`,
        { cause: error },
      );
    }
  };
  return { send: send as DynamoDBDocumentClient["send"] };
}

/** A conditional write was refused: the item was not in the state the write required. */
export function isConditionalCheckFailure(error: unknown): boolean {
  return error instanceof Error && error.name === "ConditionalCheckFailedException";
}

const throttlingErrorNames = new Set([
  "ProvisionedThroughputExceededException",
  "RequestLimitExceeded",
  "ThrottlingException",
  "TooManyRequestsException",
]);
const serverErrorNames = new Set([
  "InternalServerError",
  "ServiceUnavailable",
  "RequestTimeout",
  "RequestTimeoutException",
  "TimeoutError",
]);
const networkErrorCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * Whether another attempt later may succeed: throttling, a server error, or no answer at all. Client
 * errors (a refused condition, a missing table, a denied permission, a malformed request) are not.
 */
export function isTransientDynamoDbError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const details = error as Error & { $metadata?: { httpStatusCode?: number }; code?: unknown };
  if (throttlingErrorNames.has(error.name) || serverErrorNames.has(error.name)) return true;
  if ((details.$metadata?.httpStatusCode ?? 0) >= 500) return true;
  return typeof details.code === "string" && networkErrorCodes.has(details.code);
}

export function requireText(field: string, value: string): void {
  if (typeof value !== "string" || value.trim() === "")
    throw new InvalidInputError(`${field} must be a non-empty string`);
}
