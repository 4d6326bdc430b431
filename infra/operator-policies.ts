// What people need to use the deployed stack from the CLI, as managed policies to attach to their
// roles (or an IAM Identity Center permission set): reading the catalogue, and running restores. The
// functions' roles are not for people; without these, operators would be handed broad policies.
import { Stack } from "aws-cdk-lib";
import type * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as iam from "aws-cdk-lib/aws-iam";
import type * as kms from "aws-cdk-lib/aws-kms";
import type * as s3 from "aws-cdk-lib/aws-s3";
import type * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import { approvalsPartition, CatalogueTable } from "../lambdas/core/catalogue/catalogue-table.js";
import { restoreRunPrefix } from "../lambdas/core/restore/agent-status-report.js";
import { executionArnsOf } from "./asl-state-machine.js";
import { acknowledgeWildcardResources } from "./nag-acknowledgements.js";
import { keyUseThroughS3 } from "./snapshot-storage.js";

export interface OperatorPoliciesProps {
  table: dynamodb.ITable;
  /** The clusters whose catalogue rows may be read. */
  clusters: readonly string[];
  restoreStateMachine: sfn.IStateMachine;
  backupStateMachine: sfn.IStateMachine;
  /** Where the restore agents' status objects are, for `status` of a running restore. */
  snapshots: { bucket: s3.IBucket; key: kms.IKey; prefix: string; restorableClusters: readonly string[] };
}

export class OperatorPolicies extends Construct {
  /** `etcd-backup list` and `show`: the named clusters' catalogue rows and the stack's outputs. */
  readonly catalogueReader: iam.ManagedPolicy;
  /** The reader's access, plus `etcd-backup restore`, `approve`, `reject`, on-demand `backup` and `status`. */
  readonly restoreOperator: iam.ManagedPolicy;

  constructor(scope: Construct, id: string, props: OperatorPoliciesProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const table = props.table.tableArn;
    const readCatalogue = [
      new iam.PolicyStatement({
        actions: ["cloudformation:DescribeStacks"],
        resources: [stack.stackId],
      }),
      new iam.PolicyStatement({
        actions: ["dynamodb:GetItem", "dynamodb:Query"],
        resources: [table, `${table}/index/${CatalogueTable.verifiedByClusterIndex.indexName}`],
        conditions: { "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": [...props.clusters] } },
      }),
    ];
    this.catalogueReader = new iam.ManagedPolicy(this, "CatalogueReader", {
      description: "etcd-backup: list and show the catalogue (etcd-backup list, show)",
      statements: readCatalogue,
    });

    const executions = executionArnsOf(this, props.restoreStateMachine);
    const backupExecutions = executionArnsOf(this, props.backupStateMachine);
    this.restoreOperator = new iam.ManagedPolicy(this, "RestoreOperator", {
      description:
        "etcd-backup: start, follow, approve, reject and stop restores; start and follow on-demand backups (etcd-backup restore, approve, reject, backup, status)",
      statements: [
        ...readCatalogue,
        new iam.PolicyStatement({
          actions: ["states:StartExecution"],
          resources: [props.restoreStateMachine.stateMachineArn, props.backupStateMachine.stateMachineArn],
        }),
        new iam.PolicyStatement({
          actions: ["states:DescribeExecution", "states:StopExecution"],
          resources: [executions, backupExecutions],
        }),
        // Which step of a backup failed, and why. Not a restore's history: its tasks' parameters carry
        // the agents' presigned URLs, which would reach the snapshot itself.
        new iam.PolicyStatement({
          actions: ["states:GetExecutionHistory"],
          resources: [backupExecutions],
        }),
        // The task token of a waiting restore, kept in the approvals partition, read and then removed.
        new iam.PolicyStatement({
          actions: ["dynamodb:GetItem", "dynamodb:DeleteItem"],
          resources: [table],
          conditions: { "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": [approvalsPartition] } },
        }),
        new iam.PolicyStatement({
          actions: ["states:SendTaskSuccess", "states:SendTaskFailure"],
          resources: ["*"],
        }),
        ...agentStatusReads(stack, props.snapshots),
      ],
    });
    acknowledgeWildcardResources(
      this.restoreOperator,
      ["*"],
      "states:SendTaskSuccess and SendTaskFailure support no resource-level permissions (the task token names the task); the token itself is only readable from this stack's approvals partition.",
    );
    acknowledgeWildcardResources(
      this.restoreOperator,
      agentStatusObjects(props.snapshots),
      "Each restore's agents write their status under a new restore id: the grant is reading the status.json objects under <prefix>/<cluster>/_restores/ of the restorable clusters, not the plans beside them (which carry presigned URLs) and not the snapshots.",
    );
    acknowledgeWildcardResources(
      this.restoreOperator,
      [executions, backupExecutions],
      "Each restore and backup is a new execution with a generated name: the grant is the executions of this stack's two state machines, and no other.",
    );
  }
}

type SnapshotPlaces = OperatorPoliciesProps["snapshots"];

function agentStatusObjects({ bucket, prefix, restorableClusters }: SnapshotPlaces): string[] {
  return restorableClusters.map((cluster) =>
    bucket.arnForObjects(`${restoreRunPrefix(prefix, cluster, "*")}*/status.json`),
  );
}

/**
 * `etcd-backup status` of a running restore: each agent's last status (phase, state, message, a download's
 * progress). Only the status objects, which the agents write with every presigned URL withheld.
 */
function agentStatusReads(stack: Stack, places: SnapshotPlaces): iam.PolicyStatement[] {
  if (places.restorableClusters.length === 0) return [];
  return [
    new iam.PolicyStatement({
      actions: ["s3:ListBucket"],
      resources: [places.bucket.bucketArn],
      conditions: {
        StringLike: {
          "s3:prefix": places.restorableClusters.map((cluster) =>
            restoreRunPrefix(places.prefix, cluster, "*"),
          ),
        },
      },
    }),
    new iam.PolicyStatement({ actions: ["s3:GetObject"], resources: agentStatusObjects(places) }),
    new iam.PolicyStatement({
      actions: ["kms:Decrypt"],
      resources: [places.key.keyArn],
      conditions: keyUseThroughS3(stack),
    }),
  ];
}
