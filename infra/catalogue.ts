// The catalogue table, built from the same shape constants the code and local mode use
// (lambdas/core/catalogue/catalogue-table.ts), so that names and types are stated once.
import { RemovalPolicy } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import { Construct } from "constructs";
import { CatalogueTable } from "../lambdas/core/catalogue/catalogue-table.js";

type KeyShape = { readonly name: string; readonly type: "S" | "N" | "B" };

function attribute(key: KeyShape): dynamodb.Attribute {
  const type = {
    S: dynamodb.AttributeType.STRING,
    N: dynamodb.AttributeType.NUMBER,
    B: dynamodb.AttributeType.BINARY,
  };
  return { name: key.name, type: type[key.type] };
}

export class Catalogue extends Construct {
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.table = new dynamodb.Table(this, "Table", {
      partitionKey: attribute(CatalogueTable.partitionKey),
      sortKey: attribute(CatalogueTable.sortKey),
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: CatalogueTable.timeToLiveAttribute,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const index = CatalogueTable.verifiedByClusterIndex;
    this.table.addGlobalSecondaryIndex({
      indexName: index.indexName,
      partitionKey: attribute(index.partitionKey),
      sortKey: attribute(index.sortKey),
      projectionType: dynamodb.ProjectionType[index.projection],
    });
  }
}
