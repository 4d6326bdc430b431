// Where snapshots live: a versioned, KMS-encrypted, TLS-only bucket with its own key, lifecycle rules for
// what the prune step cannot reach (noncurrent versions, abandoned multipart uploads), optional Object
// Lock, and server access logs in a separate bucket.
import { Duration, RemovalPolicy, Validations } from "aws-cdk-lib";
import * as kms from "aws-cdk-lib/aws-kms";
import * as s3 from "aws-cdk-lib/aws-s3";
import { Construct } from "constructs";

export interface ObjectLockSettings {
  mode: "GOVERNANCE" | "COMPLIANCE";
  /** Default retention of every new snapshot version. */
  days: number;
}

export interface SnapshotStorageProps {
  /** Days a noncurrent version (left by a delete without VersionId, or an overwrite) is kept. */
  noncurrentVersionDays?: number;
  /** Days server access logs are kept. */
  accessLogDays?: number;
  /** S3 Object Lock with a default retention; can only be chosen when the bucket is created. */
  objectLock?: ObjectLockSettings;
}

export class SnapshotStorage extends Construct {
  readonly key: kms.Key;
  readonly bucket: s3.Bucket;
  readonly accessLogBucket: s3.Bucket;

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
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }
}
