// Where snapshots live: a versioned, KMS-encrypted, TLS-only bucket with its own key, lifecycle rules for
// what the prune step cannot reach (noncurrent versions, abandoned multipart uploads), optional Object
// Lock, server access logs in a separate bucket, and optionally a replica in another region or account.
import { Duration, RemovalPolicy, Stack, Validations } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import * as s3 from "aws-cdk-lib/aws-s3";
import { Construct, type IConstruct } from "constructs";
import { acknowledgeWildcardResources } from "./nag-acknowledgements.js";

export interface ObjectLockSettings {
  mode: "GOVERNANCE" | "COMPLIANCE";
  /** Default retention of every new snapshot version. */
  days: number;
}

/**
 * A bucket that S3 replication copies every snapshot object into: in another region, so that a regional
 * outage does not take the backups with the cluster, or another account, whose Object Lock protects them
 * from whoever can delete in this one. Created and owned outside this stack (versioned; with Object Lock
 * when this bucket has it).
 */
export interface ReplicaSettings {
  bucketArn: string;
  /** The replica's key: KMS keys are regional, and snapshots hold Secrets, so replicas are SSE-KMS too. */
  kmsKeyArn: string;
  /** The replica bucket's account, when it is not this stack's. */
  account?: string;
}

/** The replication rule's id: the dimension of its failure metric. */
export const replicationRuleId = "snapshots-to-replica";

/** Limits a grant on the snapshot key to its use by S3 (SSE-KMS) in the stack's region. */
export function keyUseThroughS3(scope: IConstruct): { StringEquals: Record<string, string> } {
  const stack = Stack.of(scope);
  return { StringEquals: { "kms:ViaService": `s3.${stack.region}.${stack.urlSuffix}` } };
}

export interface SnapshotStorageProps {
  /** Days a noncurrent version (left by a delete without VersionId, or an overwrite) is kept. */
  noncurrentVersionDays?: number;
  /** Days server access logs are kept. */
  accessLogDays?: number;
  /** S3 Object Lock with a default retention; can only be chosen when the bucket is created. */
  objectLock?: ObjectLockSettings;
  /** With the targets file's prefix, under which the product writes everything: what is replicated. */
  replica?: ReplicaSettings & { prefix: string };
}

export class SnapshotStorage extends Construct {
  readonly key: kms.Key;
  readonly bucket: s3.Bucket;
  readonly accessLogBucket: s3.Bucket;
  readonly replicaBucket?: s3.IBucket;
  readonly replicationRole?: iam.Role;

  constructor(scope: Construct, id: string, props: SnapshotStorageProps = {}) {
    super(scope, id);
    const noncurrentVersionDays = props.noncurrentVersionDays ?? 30;

    this.key = new kms.Key(this, "Key", {
      description: "etcd-backup: encrypts etcd snapshots at rest (S3 SSE-KMS with a bucket key)",
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // Server access logs cannot be delivered to an SSE-KMS bucket: this one uses SSE-S3.
    this.accessLogBucket = new s3.Bucket(this, "AccessLogs", {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      lifecycleRules: [
        {
          id: "expire-access-logs",
          expiration: Duration.days(props.accessLogDays ?? 365),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.accessLogBucket).acknowledge({
      id: "AwsSolutions-S1",
      reason:
        "This bucket receives the snapshot bucket's server access logs; logging it into itself would loop and into another bucket would only move the question.",
    });

    const replica = props.replica;
    if (replica) {
      this.replicaBucket = s3.Bucket.fromBucketAttributes(this, "Replica", {
        bucketArn: replica.bucketArn,
        ...(replica.account ? { account: replica.account } : {}),
      });
      // Ours rather than the one S3's construct would make, which is named CDKReplicationRole in every stack.
      this.replicationRole = new iam.Role(this, "ReplicationRole", {
        assumedBy: new iam.ServicePrincipal("s3.amazonaws.com"),
        description: "etcd-backup: S3 replicates snapshot objects to the replica bucket with this role",
      });
    }
    this.bucket = new s3.Bucket(this, "Snapshots", {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      versioned: true,
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.key,
      bucketKeyEnabled: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.accessLogBucket,
      serverAccessLogsPrefix: "snapshots/",
      lifecycleRules: [
        {
          id: "expire-noncurrent-versions",
          noncurrentVersionExpiration: Duration.days(noncurrentVersionDays),
          expiredObjectDeleteMarker: true,
        },
        { id: "abort-incomplete-multipart-uploads", abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
      ...(props.objectLock
        ? {
            objectLockEnabled: true,
            objectLockDefaultRetention:
              props.objectLock.mode === "COMPLIANCE"
                ? s3.ObjectLockRetention.compliance(Duration.days(props.objectLock.days))
                : s3.ObjectLockRetention.governance(Duration.days(props.objectLock.days)),
          }
        : {}),
      ...(this.replicaBucket && this.replicationRole && replica
        ? {
            replicationRole: this.replicationRole,
            replicationRules: [
              {
                id: replicationRuleId,
                destination: this.replicaBucket,
                kmsKey: kms.Key.fromKeyArn(this, "ReplicaKey", replica.kmsKeyArn),
                sseKmsEncryptedObjects: true,
                // Pruning deletes versions, which replication never copies: the replica's own lifecycle
                // decides how long it keeps them. A delete marker left by hand stays here too.
                deleteMarkerReplication: false,
                // Without them S3 publishes no OperationsFailedReplication, which the replication alarm reads.
                metrics: s3.ReplicationTimeValue.FIFTEEN_MINUTES,
                filter: { prefix: `${replica.prefix}/` },
              },
            ],
          }
        : {}),
      removalPolicy: RemovalPolicy.RETAIN,
    });
    if (this.replicationRole && replica)
      this.allowReplication(this.replicationRole, replica, props.objectLock);
  }

  /** What S3 needs to copy a version under the prefix (with its retention) into the replica, re-encrypted. */
  private allowReplication(
    role: iam.Role,
    replica: ReplicaSettings & { prefix: string },
    objectLock: ObjectLockSettings | undefined,
  ): void {
    const sourceObjects = `${this.bucket.bucketArn}/${replica.prefix}/*`;
    const replicaObjects = `${replica.bucketArn}/${replica.prefix}/*`;
    const allow = (actions: string[], resources: string[]) =>
      role.addToPolicy(new iam.PolicyStatement({ actions, resources }));
    allow(["s3:GetReplicationConfiguration", "s3:ListBucket"], [this.bucket.bucketArn]);
    allow(
      [
        "s3:GetObjectVersionForReplication",
        "s3:GetObjectVersionAcl",
        "s3:GetObjectVersionTagging",
        ...(objectLock ? ["s3:GetObjectRetention", "s3:GetObjectLegalHold"] : []),
      ],
      [sourceObjects],
    );
    allow(["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"], [replicaObjects]);
    allow(["kms:Decrypt"], [this.key.keyArn]);
    allow(["kms:Encrypt", "kms:GenerateDataKey"], [replica.kmsKeyArn]);
    acknowledgeWildcardResources(
      role,
      [sourceObjects, replicaObjects],
      "Replication copies every object version the product writes under its prefix, whose keys are new for each snapshot; nothing outside the prefix.",
    );
  }
}
