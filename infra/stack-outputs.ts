// The stack's name and output names: the contract between the deployed stack and the CLI, which finds
// the table, bucket and state machines from them. No CDK import, so the CLI can load it.

/** The stack's name unless the `stackName` context says otherwise. */
export const defaultStackName = "EtcdBackup";

/** The names of the stack outputs. */
export const StackOutputs = {
  snapshotBucketName: "SnapshotBucketName",
  snapshotPrefix: "SnapshotPrefix",
  snapshotKeyArn: "SnapshotKeyArn",
  catalogueTableName: "CatalogueTableName",
  backupStateMachineArn: "BackupStateMachineArn",
  restoreStateMachineArn: "RestoreStateMachineArn",
  approversTopicArn: "ApproversTopicArn",
  onCallTopicArn: "OnCallTopicArn",
  targetsParameterName: "TargetsParameterName",
  /** Managed policies to attach to the people who use the CLI against the stack. */
  catalogueReaderPolicyArn: "CatalogueReaderPolicyArn",
  restoreOperatorPolicyArn: "RestoreOperatorPolicyArn",
  /**
   * The roles of the functions that call a Kubernetes API (comma-separated): what aws-auth maps to the
   * `etcd-backup` group where access entries are off, and what a target's `roleArn` must trust.
   */
  kubernetesRoleArns: "KubernetesRoleArns",
  /** Only with a replica bucket: whom the replica's bucket policy and KMS key policy must allow. */
  replicationRoleArn: "ReplicationRoleArn",
  /** Only with a VPC placement and no security groups given: allow it to etcd's client port. */
  clusterAccessSecurityGroupId: "ClusterAccessSecurityGroupId",
} as const;

export type StackOutputName = (typeof StackOutputs)[keyof typeof StackOutputs];
