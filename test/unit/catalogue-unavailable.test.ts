import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  InternalServerError,
  ProvisionedThroughputExceededException,
  ResourceNotFoundException,
} from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, GetCommand, QueryCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { ClusterLeases } from "../../lambdas/core/catalogue/cluster-lease.js";
import { isTransientDynamoDbError } from "../../lambdas/core/catalogue/dynamodb-documents.js";
import { CatalogueUnavailableError, ErrorNames } from "../../lambdas/core/errors.js";
import { findFreePort } from "../support/free-port.js";

// The repositories send through a document client over the DynamoDB client they are given; mocking the
// document client's class intercepts every request they make.
const documents = mockClient(DynamoDBDocumentClient);
const client = new DynamoDBClient({
  region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
});
const catalogue = new CatalogueRepository({ client, tableName: "catalogue" });
const leases = new ClusterLeases({ client, tableName: "catalogue" });

afterEach(() => documents.reset());
afterAll(() => {
  documents.restore();
  client.destroy();
});

function throttled() {
  return new ProvisionedThroughputExceededException({
    message: "The level of configured provisioned throughput for the table was exceeded",
    $metadata: { httpStatusCode: 400 },
  });
}

describe("CatalogueUnavailableError", () => {
  it("is what a ProvisionedThroughputExceededException from the catalogue becomes, with the cause kept", async () => {
    documents.on(GetCommand).rejects(throttled());

    const failure = await catalogue.getSnapshot("prod", "20261124T193600000Z-3f9a1c").catch((error) => error);

    expect(failure).toBeInstanceOf(CatalogueUnavailableError);
    expect(failure.name).toBe(ErrorNames.CatalogueUnavailable);
    expect(failure.transient).toBe(true);
    expect(failure.message).toContain("GetCommand");
    expect(failure.message).toContain("ProvisionedThroughputExceededException");
    expect(failure.cause).toBeInstanceOf(ProvisionedThroughputExceededException);
  });

  it("is what a 5xx on a listing becomes", async () => {
    documents
      .on(QueryCommand)
      .rejects(
        new InternalServerError({ message: "Internal server error", $metadata: { httpStatusCode: 500 } }),
      );

    await expect(catalogue.listSnapshots("prod")).rejects.toBeInstanceOf(CatalogueUnavailableError);
  });

  it("is what throttling of a lease write becomes", async () => {
    documents.on(UpdateCommand).rejects(throttled());

    await expect(
      leases.acquireLease({ cluster: "prod", owner: "arn:execution:1", ttlSeconds: 60, now: new Date() }),
    ).rejects.toBeInstanceOf(CatalogueUnavailableError);
  });

  it("is not what a refused condition becomes: the repository still reads it as a conflict or a repeat", async () => {
    documents
      .on(UpdateCommand)
      .rejects(
        new ConditionalCheckFailedException({ message: "The conditional request failed", $metadata: {} }),
      )
      .on(GetCommand)
      .resolves({ Item: { owner: "arn:execution:other", heldUntilEpochMs: Date.now() + 60_000 } });

    await expect(
      leases.acquireLease({ cluster: "prod", owner: "arn:execution:1", ttlSeconds: 60, now: new Date() }),
    ).rejects.toMatchObject({ name: ErrorNames.LeaseHeld });
  });

  it("is not what a missing table becomes: that is a deployment error, not a transient one", async () => {
    documents
      .on(GetCommand)
      .rejects(new ResourceNotFoundException({ message: "Requested resource not found", $metadata: {} }));

    const failure = await catalogue.getSnapshot("prod", "20261124T193600000Z-3f9a1c").catch((error) => error);
    expect(failure).toBeInstanceOf(ResourceNotFoundException);
  });

  // Last: it restores the real document client to reach the network.
  it("is what an unreachable endpoint becomes, once the SDK has given up retrying", async () => {
    documents.restore();
    const unreachable = new DynamoDBClient({
      region: "us-east-1",
      endpoint: `http://127.0.0.1:${await findFreePort()}`,
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
      maxAttempts: 2,
    });
    try {
      const failure = await new CatalogueRepository({ client: unreachable, tableName: "catalogue" })
        .getSnapshot("prod", "20261124T193600000Z-3f9a1c")
        .catch((error) => error);
      expect(failure).toBeInstanceOf(CatalogueUnavailableError);
    } finally {
      unreachable.destroy();
    }
  });
});

describe("isTransientDynamoDbError", () => {
  it.each([
    ["ThrottlingException", {}, true],
    ["RequestLimitExceeded", {}, true],
    ["ServiceUnavailable", { $metadata: { httpStatusCode: 503 } }, true],
    ["Error", { code: "ECONNRESET" }, true],
    ["TimeoutError", {}, true],
    ["AccessDeniedException", { $metadata: { httpStatusCode: 400 } }, false],
    ["ValidationException", { $metadata: { httpStatusCode: 400 } }, false],
    ["ConditionalCheckFailedException", { $metadata: { httpStatusCode: 400 } }, false],
  ])("classifies %s %o as transient: %s", (name, fields, transient) => {
    const error = Object.assign(new Error("failed"), { name, ...fields });
    expect(isTransientDynamoDbError(error)).toBe(transient);
  });
});
