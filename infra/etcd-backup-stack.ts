// The deployed product: storage, catalogue, the backup workflow with its schedules, the restore workflow
// with its approvers' topic, on-call alerts and the freshness alarms, for the targets of one validated targets file. Outputs carry stable names that
// the CLI looks up.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Annotations, CfnOutput, Fn, Stack, type StackProps } from "aws-cdk-lib";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as logs from "aws-cdk-lib/aws-logs";
import type { Construct } from "constructs";
import type { TargetsFile } from "../lambdas/core/config/target-config.js";
import { BackupWorkflow, backupSteps } from "./backup-workflow.js";
import { Catalogue } from "./catalogue.js";
import { clusterAccessOf } from "./cluster-access.js";
import type { BackupResources, StepNetwork } from "./lambda-step-function.js";
import { Monitoring } from "./monitoring.js";
import { OnCallTopic } from "./on-call-topic.js";
import { OperatorPolicies } from "./operator-policies.js";
import { RestoreWorkflow, restoreSteps } from "./restore-workflow.js";
import { type ObjectLockSettings, type ReplicaSettings, SnapshotStorage } from "./snapshot-storage.js";
import { StackOutputs } from "./stack-outputs.js";
import { TargetsParameter } from "./targets-parameter.js";
import { stepRoles } from "./workflow-steps.js";

/** The repository root: bundling, the handlers and the ASL files are found from here. */
export const projectRoot = dirname(dirname(fileURLToPath(import.meta.url)));

/**
 * An existing VPC for the steps that reach etcd or a Kubernetes API on private addresses. By ids, so
 * that synthesis needs no lookup; the subnets need a route to the AWS APIs (NAT or VPC endpoints).
 */
export interface VpcPlacement {
  vpcId: string;
  subnetIds: string[];
  /** Default: a security group created here, outbound only, exported as ClusterAccessSecurityGroupId. */
  securityGroupIds?: string[];
}

export interface EtcdBackupStackProps extends StackProps {
  targets: TargetsFile;
  /** E-mail addresses subscribed to the on-call topic. */
  alertEmails?: readonly string[];
  /** E-mail addresses subscribed to the restore approvers' topic. */
  approverEmails?: readonly string[];
  objectLock?: ObjectLockSettings;
  /** A bucket in another region or account that every object under the targets' prefix is replicated to. */
  replica?: ReplicaSettings;
  noncurrentVersionDays?: number;
  logRetention?: logs.RetentionDays;
  /** EKS access entries for the named EKS clusters (default true; off for clusters in CONFIG_MAP mode). */
  eksAccessEntries?: boolean;
  /** VPC placement of the steps that reach etcd (private endpoints). */
  vpc?: VpcPlacement;
  /** Where the handlers are; tests point this elsewhere. Defaults to lambdas/handlers. */
  handlersDirectory?: string;
}

export class EtcdBackupStack extends Stack {
  readonly storage: SnapshotStorage;
  readonly catalogue: Catalogue;
  readonly targetsParameter: TargetsParameter;
  readonly onCall: OnCallTopic;
  readonly backup: BackupWorkflow;
  readonly restore: RestoreWorkflow;
  readonly monitoring: Monitoring;
  readonly operatorPolicies: OperatorPolicies;

  constructor(scope: Construct, id: string, props: EtcdBackupStackProps) {
    super(scope, id, props);
    const logRetention = props.logRetention ?? logs.RetentionDays.THREE_MONTHS;
    const network = props.vpc ? this.importNetwork(props.vpc) : undefined;

    this.storage = new SnapshotStorage(this, "Storage", {
      ...(props.objectLock ? { objectLock: props.objectLock } : {}),
      ...(props.noncurrentVersionDays ? { noncurrentVersionDays: props.noncurrentVersionDays } : {}),
      ...(props.replica ? { replica: { ...props.replica, prefix: props.targets.prefix } } : {}),
    });
    this.catalogue = new Catalogue(this, "Catalogue");
    this.targetsParameter = new TargetsParameter(this, "Targets", { targets: props.targets });
    this.onCall = new OnCallTopic(this, "OnCall", { emails: props.alertEmails ?? [] });

    // What every function works on, and how they are built: shared by both workflows and the age check.
    const resources: BackupResources = {
      storage: this.storage,
      prefix: props.targets.prefix,
      table: this.catalogue.table,
      targetsParameter: this.targetsParameter.parameter,
      clusterAccess: clusterAccessOf(this, props.targets),
    };
    const functions = {
      projectRoot,
      handlersDirectory: props.handlersDirectory ?? join(projectRoot, "lambdas", "handlers"),
      logRetention,
    };
    const workflows = {
      ...functions,
      resources,
      targets: props.targets.targets,
      onCall: this.onCall,
      ...(network ? { network } : {}),
      ...(props.eksAccessEntries === undefined ? {} : { eksAccessEntries: props.eksAccessEntries }),
    };

    this.backup = new BackupWorkflow(this, "BackupWorkflow", workflows);

    this.restore = new RestoreWorkflow(this, "RestoreWorkflow", {
      ...workflows,
      backupStateMachine: this.backup.stateMachine,
      approverEmails: props.approverEmails ?? [],
    });

    this.monitoring = new Monitoring(this, "Monitoring", {
      onCall: this.onCall,
      stateMachines: { backup: this.backup.stateMachine, restore: this.restore.stateMachine },
      targets: props.targets.targets,
      ageCheck: { ...functions, resources },
      ...(this.storage.replicaBucket
        ? { replication: { source: this.storage.bucket, destination: this.storage.replicaBucket } }
        : {}),
    });

    this.operatorPolicies = new OperatorPolicies(this, "OperatorPolicies", {
      table: this.catalogue.table,
      clusters: resources.clusterAccess.clusters,
      restoreStateMachine: this.restore.stateMachine,
      backupStateMachine: this.backup.stateMachine,
      snapshots: {
        bucket: this.storage.bucket,
        key: this.storage.key,
        prefix: props.targets.prefix,
        restorableClusters: this.restore.restorableClusters,
      },
    });

    const output = (id: string, value: string, description: string) =>
      new CfnOutput(this, id, { value, description });
    output(StackOutputs.snapshotBucketName, this.storage.bucket.bucketName, "Bucket holding the snapshots");
    output(StackOutputs.snapshotPrefix, props.targets.prefix, "Key prefix of every snapshot object");
    output(StackOutputs.snapshotKeyArn, this.storage.key.keyArn, "KMS key encrypting the snapshots");
    output(StackOutputs.catalogueTableName, this.catalogue.table.tableName, "Catalogue DynamoDB table");
    output(
      StackOutputs.backupStateMachineArn,
      this.backup.stateMachine.stateMachineArn,
      "Backup state machine",
    );
    output(
      StackOutputs.restoreStateMachineArn,
      this.restore.stateMachine.stateMachineArn,
      "Restore state machine",
    );
    output(StackOutputs.onCallTopicArn, this.onCall.topic.topicArn, "On-call SNS topic");
    output(
      StackOutputs.approversTopicArn,
      this.restore.approvers.topic.topicArn,
      "Restore approvers SNS topic",
    );
    output(
      StackOutputs.targetsParameterName,
      this.targetsParameter.parameter.parameterName,
      "SSM parameter holding the targets file",
    );
    output(
      StackOutputs.catalogueReaderPolicyArn,
      this.operatorPolicies.catalogueReader.managedPolicyArn,
      "Managed policy for people who list and show the catalogue",
    );
    output(
      StackOutputs.restoreOperatorPolicyArn,
      this.operatorPolicies.restoreOperator.managedPolicyArn,
      "Managed policy for people who start, approve and reject restores",
    );
    // The steps granted cluster access: they call the Kubernetes API of targets that have one.
    const callsKubernetes = (step: { access: readonly string[] }) =>
      step.access.includes("clusters") || step.access.includes("agent-pod-clusters");
    const kubernetesRoles = [
      ...Object.values(stepRoles(this.backup.functions, backupSteps, callsKubernetes)),
      ...Object.values(stepRoles(this.restore.functions, restoreSteps, callsKubernetes)),
    ];
    output(
      StackOutputs.kubernetesRoleArns,
      Fn.join(
        ",",
        [...new Set(kubernetesRoles)].map((role) => role.roleArn),
      ),
      "Roles of the functions that call Kubernetes APIs: map them to the etcd-backup group (aws-auth) where access entries are off",
    );
    if (this.storage.bucket.replicationRoleArn) {
      output(
        StackOutputs.replicationRoleArn,
        this.storage.bucket.replicationRoleArn,
        "Role S3 replicates snapshots with: the replica bucket's policy and its KMS key must allow it",
      );
    }
    const [createdGroup] = network?.securityGroups ?? [];
    if (props.vpc && !props.vpc.securityGroupIds && createdGroup) {
      output(
        StackOutputs.clusterAccessSecurityGroupId,
        createdGroup.securityGroupId,
        "Security group of the functions that reach etcd: allow it to the members' client port",
      );
    }
  }

  private importNetwork(placement: VpcPlacement): StepNetwork {
    if (placement.subnetIds.length === 0) throw new Error("vpc.subnetIds: give at least one subnet");
    // The functions get explicit subnets, so the VPC's zones are never read: the region's list will do.
    const vpc = ec2.Vpc.fromVpcAttributes(this, "Vpc", {
      vpcId: placement.vpcId,
      availabilityZones: Fn.getAzs(),
    });
    Annotations.of(vpc).acknowledgeWarning(
      "@aws-cdk/aws-ec2:vpcAttributeIsListTokenavailabilityZones",
      "Subnets are selected explicitly by id; the imported VPC's zone list is never used.",
    );
    const subnets = placement.subnetIds.map((subnetId) => {
      const subnet = ec2.Subnet.fromSubnetId(this, `Subnet-${subnetId}`, subnetId);
      Annotations.of(subnet).acknowledgeWarning(
        "@aws-cdk/aws-ec2:noSubnetRouteTableId",
        "Lambda's VPC configuration needs subnet ids only; no route table is read.",
      );
      return subnet;
    });
    const securityGroups = placement.securityGroupIds
      ? placement.securityGroupIds.map((id) =>
          ec2.SecurityGroup.fromSecurityGroupId(this, `SecurityGroup-${id}`, id),
        )
      : [
          new ec2.SecurityGroup(this, "ClusterAccess", {
            vpc,
            description: "etcd-backup: functions that reach etcd members and Kubernetes APIs",
            allowAllOutbound: true,
          }),
        ];
    return { vpc, subnets: { subnets }, securityGroups };
  }
}
