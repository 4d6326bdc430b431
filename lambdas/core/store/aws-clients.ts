// AWS clients configured the same way for the Lambda handlers, the CLI and the local stack.
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";

export interface AwsEndpoints {
  region?: string;
  /** A local stand-in (s3rver, dynalite) or a VPC endpoint; omitted for AWS itself. */
  endpoint?: string;
}

/** s3rver's default account (dynalite accepts any); real AWS never gets these. */
export const loopbackCredentials = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

function isLoopback(endpoint: string | undefined): boolean {
  if (!endpoint) return false;
  const host = new URL(endpoint).hostname;
  return host === "127.0.0.1" || host === "localhost" || host === "[::1]";
}

/** Without an explicit region the SDK's own chain (AWS_REGION, profile) applies; loopback needs none. */
function connectionFor(options: AwsEndpoints) {
  if (isLoopback(options.endpoint)) {
    return {
      endpoint: options.endpoint,
      region: options.region ?? "us-east-1",
      credentials: loopbackCredentials,
    };
  }
  return {
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.region ? { region: options.region } : {}),
  };
}

export function createS3Client(options: AwsEndpoints = {}): S3Client {
  return new S3Client({
    ...connectionFor(options),
    forcePathStyle: options.endpoint !== undefined,
    // The upload sends its own CRC32C per part, computed once; the SDK's default would compute another
    // checksum and, for a streamed body, frame it as aws-chunked.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

export function createDynamoDbClient(options: AwsEndpoints = {}): DynamoDBClient {
  return new DynamoDBClient({
    ...connectionFor(options),
  });
}
