// One Lambda function per state-machine step, with the settings they share (arm64, Node 22, ESM bundle,
// X-Ray, Powertools, a log group with retention) and, in the same place, each environment variable the
// handlers read together with exactly the access the step declares. Every function gets its own role.
import { basename, join } from "node:path";
import { Duration, type Size, Stack, Validations } from "aws-cdk-lib";
import type * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import type * as ec2 from "aws-cdk-lib/aws-ec2";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambda from "aws-cdk-lib/aws-lambda";
import type { ICommandHooks } from "aws-cdk-lib/aws-lambda-nodejs";
import * as nodejs from "aws-cdk-lib/aws-lambda-nodejs";
import * as logs from "aws-cdk-lib/aws-logs";
import type * as ssm from "aws-cdk-lib/aws-ssm";
import { Construct } from "constructs";
import { approvalsPartition, CatalogueTable } from "../lambdas/core/catalogue/catalogue-table.js";
import { MetricNamespace, MetricServiceName } from "../lambdas/core/metric-names.js";
import { type AgentInstances, grantAgentCommands } from "./agent-commands.js";
import type { ClusterAccess } from "./cluster-access.js";
import type { FreeSpaceDocument } from "./free-space-document.js";
import { acknowledgeWildcardResources } from "./nag-acknowledgements.js";
import { crc32cNativeModule, esmRequireBanner, linuxArm64NativeModuleHooks } from "./native-modules.js";
import type { NotificationTopic } from "./on-call-topic.js";
import { keyUseThroughS3, type SnapshotStorage } from "./snapshot-storage.js";
import { defaultStackName } from "./stack-outputs.js";

/** The Lambda runtime of every handler: one place to move it. */
export const handlerRuntime = lambda.Runtime.NODEJS_22_X;

/** What the backup functions work on, shared by all of them. */
export interface BackupResources {
  storage: SnapshotStorage;
  /** Key prefix of every snapshot object (the targets file's `prefix`). */
  prefix: string;
  table: dynamodb.ITable;
  targetsParameter: ssm.IStringParameter;
  clusterAccess: ClusterAccess;
}

/** What only the restore functions work on. */
export interface RestoreResources {
  /** Clusters with a restore layout: only their `<prefix>/<cluster>/_restores/` keys are written. */
  restorableClusters: string[];
  /** etcd client TLS secrets of those clusters (the restore steps reach etcd, never a Kubernetes API). */
  etcdTlsSecretArns: string[];
  approvers: NotificationTopic;
  /** The Kubernetes access (kubeconfig secrets, EKS clusters, roles) of the pod-executor clusters only. */
  agentPodClusterAccess: ClusterAccess;
  /** Some target stages its restore tool in the bucket (`<prefix>/_tools/`), which the agents' URLs read. */
  stagedRestoreTools: boolean;
  /** The ssm executor's nodes, by id and by tag (which validation looks up among the managed instances). */
  agentInstances: AgentInstances;
  /** The df-only document of validate-restore's free-space probe; only where a target uses the ssm executor. */
  freeSpaceDocument?: FreeSpaceDocument;
}

/** Where the restore agent's script lands in the write-restore-plans bundle, and so on Lambda. */
export const bundledAgentScript = {
  source: ["lambdas", "core", "restore", "agent", "etcd-restore-agent.sh"],
};

/**
 * The kinds of access a step may declare. Each maps to the narrowest statements that let the code do
 * its job (see `grantAccess`), always restricted to the named clusters.
 */
export type StepAccess =
  /** Catalogue rows and leases of the named clusters: get, put, update, query (table and verified index). */
  | "catalogue"
  /** Query the verified-snapshot index of the named clusters, nothing else (the freshness check). */
  | "newest-verified"
  /** Read the targets parameter. */
  | "targets"
  /** Named secrets, eks:DescribeCluster on the named EKS clusters, sts:AssumeRole on the named roles. */
  | "clusters"
  /** Multipart upload of new snapshot objects, tagging them, aborting an attempt's leftovers. */
  | "write-snapshots"
  /** Read snapshot object versions back and tag them with the verdict. */
  | "verify-snapshots"
  /** Delete snapshot object versions (after checking Object Lock) and abort their leftover uploads. */
  | "prune-snapshots"
  /** Abort multipart uploads a failed run left open. */
  | "abort-uploads"
  /** Restore: read the named clusters' snapshot object versions and their tags (`*.db` keys only). */
  | "read-snapshot-versions"
  /** Restore: the etcd client TLS secrets of the restorable clusters, nothing else. */
  | "etcd-tls"
  /** Restore: write plan objects under `<prefix>/<cluster>/_restores/` of the restorable clusters. */
  | "write-restore-plans"
  /** Restore: read plan and status objects under `<prefix>/<cluster>/_restores/`. */
  | "read-restore-plans"
  /** Restore: write the pending-approval item (task token) in the approvals partition. */
  | "approvals"
  /** Restore: look up the managed instances that carry a member's instanceTag (only when one has a tag). */
  | "find-agent-instances"
  /**
   * Restore: run the free-space probe on the ssm executor's nodes before approval (the stack's df-only
   * document, on the agents' instances; sets FREE_SPACE_DOCUMENT) and read its answers.
   */
  | "probe-agent-instances"
  /** Restore: publish to the approvers' topic (sets APPROVERS_TOPIC_ARN). */
  | "notify-approvers"
  /** Restore: sign the agents' URLs with a PresignRole session of its own (sets PRESIGN_ROLE_ARN). */
  | "presign-urls"
  /** Restore, pod executor: reach the Kubernetes API of the clusters whose agents run as pods, no other. */
  | "agent-pod-clusters";

export interface StepSizing {
  memorySize: number;
  timeout: Duration;
  /** /tmp size, for steps that stage a snapshot on disk. */
  ephemeralStorage?: Size;
}

/** Optional VPC placement, for steps that must reach etcd or a Kubernetes API on private addresses. */
export interface StepNetwork {
  vpc: ec2.IVpc;
  subnets?: ec2.SubnetSelection;
  securityGroups?: ec2.ISecurityGroup[];
}

export interface LambdaStepFunctionProps {
  /** The handler's file name in the handlers directory, without `.ts`. */
  handler: string;
  description: string;
  sizing: StepSizing;
  access: readonly StepAccess[];
  resources: BackupResources;
  /** Required by the restore access kinds. */
  restore?: RestoreResources;
  /** Copy the restore agent's script into the bundle and point RESTORE_AGENT_SCRIPT at it. */
  restoreAgentScript?: boolean;
  /** Ship the native CRC32C module for linux-arm64 (steps that checksum whole snapshots). */
  nativeCrc32c?: boolean;
  network?: StepNetwork;
  /** Where bundling starts from: the repository root, holding package-lock.json and node_modules. */
  projectRoot: string;
  handlersDirectory: string;
  logRetention: logs.RetentionDays;
}

export class LambdaStepFunction extends Construct {
  readonly function: nodejs.NodejsFunction;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
  /** With "presign-urls": the role whose sessions sign the agents' URLs. */
  readonly presignRole?: iam.Role;

  constructor(scope: Construct, id: string, props: LambdaStepFunctionProps) {
    super(scope, id);
    const { resources } = props;

    this.logGroup = new logs.LogGroup(this, "Logs", { retention: props.logRetention });
    // A role of its own per step, with no managed policy: logs to its own group only.
    this.role = new iam.Role(this, "Role", {
      assumedBy: new iam.ServicePrincipal("lambda.amazonaws.com"),
      description: `etcd-backup ${props.handler}`,
    });
    this.logGroup.grantWrite(this.role);

    const access = new Set(props.access);
    const restore = () => {
      if (!props.restore) throw new Error(`${props.handler}: restore access needs the restore resources`);
      return props.restore;
    };
    const extraEnvironment: Record<string, string> = {};
    if (props.restore) extraEnvironment.OPERATOR_CLI_FLAGS = operatorCliFlags(Stack.of(this));
    if (access.has("notify-approvers")) {
      extraEnvironment.APPROVERS_TOPIC_ARN = restore().approvers.topic.topicArn;
    }
    const freeSpaceDocument = props.restore?.freeSpaceDocument;
    if (access.has("probe-agent-instances") && freeSpaceDocument) {
      extraEnvironment.FREE_SPACE_DOCUMENT = freeSpaceDocument.name;
    }
    if (access.has("presign-urls")) {
      this.presignRole = createPresignRole(this, this.role, resources, restore());
      extraEnvironment.PRESIGN_ROLE_ARN = this.presignRole.roleArn;
    }
    const agentScript = join(props.projectRoot, ...bundledAgentScript.source);
    if (props.restoreAgentScript) {
      extraEnvironment.RESTORE_AGENT_SCRIPT = `/var/task/${basename(agentScript)}`;
    }

    const native = props.nativeCrc32c === true;
    const hooks: ICommandHooks[] = [
      ...(native ? [linuxArm64NativeModuleHooks(props.projectRoot, crc32cNativeModule)] : []),
      ...(props.restoreAgentScript ? [copyFileHooks(agentScript)] : []),
    ];
    this.function = new nodejs.NodejsFunction(this, "Function", {
      entry: join(props.handlersDirectory, `${props.handler}.ts`),
      handler: "handler",
      projectRoot: props.projectRoot,
      depsLockFilePath: join(props.projectRoot, "package-lock.json"),
      description: props.description,
      runtime: handlerRuntime,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.sizing.memorySize,
      timeout: props.sizing.timeout,
      ...(props.sizing.ephemeralStorage ? { ephemeralStorageSize: props.sizing.ephemeralStorage } : {}),
      role: this.role,
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      tracing: lambda.Tracing.ACTIVE,
      environment: {
        CATALOGUE_TABLE: resources.table.tableName,
        SNAPSHOT_BUCKET: resources.storage.bucket.bucketName,
        SNAPSHOT_PREFIX: resources.prefix,
        SNAPSHOT_KMS_KEY_ID: resources.storage.key.keyArn,
        TARGETS_PARAMETER_NAME: resources.targetsParameter.parameterName,
        POWERTOOLS_SERVICE_NAME: MetricServiceName,
        POWERTOOLS_METRICS_NAMESPACE: MetricNamespace,
        ...extraEnvironment,
      },
      ...(props.network
        ? {
            vpc: props.network.vpc,
            ...(props.network.subnets ? { vpcSubnets: props.network.subnets } : {}),
            ...(props.network.securityGroups ? { securityGroups: props.network.securityGroups } : {}),
          }
        : {}),
      bundling: {
        format: nodejs.OutputFormat.ESM,
        target: "node22",
        mainFields: ["module", "main"],
        minify: true,
        // Beside the bundle, read only when a stack trace is formatted (lazy-source-maps.ts): Node's
        // --enable-source-maps would parse it at every cold start.
        sourceMap: true,
        sourcesContent: false,
        banner: esmRequireBanner,
        // The AWS SDK is bundled too: the versions the lock file pins are the ones that run.
        externalModules: native ? [crc32cNativeModule] : [],
        ...(hooks.length > 0 ? { commandHooks: combineHooks(hooks) } : {}),
      },
    });

    for (const kind of access) grantAccess(this, this.role, kind, resources, restore);

    if (props.network) {
      this.role.addManagedPolicy(
        iam.ManagedPolicy.fromAwsManagedPolicyName("service-role/AWSLambdaVPCAccessExecutionRole"),
      );
      Validations.of(this).acknowledge({
        id: "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]",
        reason:
          "Attaching to a VPC takes ec2:CreateNetworkInterface, DescribeNetworkInterfaces and DeleteNetworkInterface, which allow no resource-level scoping; the AWS managed policy is exactly that set.",
      });
    }
    Validations.of(this).acknowledge({
      id: "AwsSolutions-L1",
      reason:
        "Node.js 22 is the runtime the project decided on and tests against (a supported LTS runtime); moving to Node.js 24 is a deliberate upgrade of the one constant handlerRuntime, not drift.",
    });
    acknowledgeWildcardResources(
      this,
      ["*"],
      "X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords have no resource-level permissions, so AWS requires Resource '*'.",
    );
  }
}

/** The snapshot objects (`<prefix>/<cluster>/<yyyy>/<mm>/<dd>/<id>.db`) of the named clusters. */
export function snapshotObjectArns(resources: BackupResources): string[] {
  return resources.clusterAccess.clusters.map((cluster) =>
    resources.storage.bucket.arnForObjects(`${resources.prefix}/${cluster}/*.db`),
  );
}

/** The restore working area (plans, status) of the restorable clusters. */
export function restoreObjectArns(resources: BackupResources, restore: RestoreResources): string[] {
  return restore.restorableClusters.map((cluster) =>
    resources.storage.bucket.arnForObjects(`${resources.prefix}/${cluster}/_restores/*`),
  );
}

const snapshotObjectsReason =
  "Snapshot keys carry the date and a fresh id: the grant is the *.db keys under <prefix>/<cluster>/ of the named clusters (any of them, for an allowed cross-cluster restore), and nothing else in the bucket.";
const restoreObjectsReason =
  "Each restore writes plans and status objects under a new id: the grant is <prefix>/<cluster>/_restores/* of the clusters with a restore layout, and nothing else in the bucket.";

/**
 * The role that signs the agents' presigned URLs: assumable only by `signer`, and nothing but reading the
 * snapshots and reading and writing the restore working area, through S3 only for the key. A URL dies
 * with the session that signed it; a Lambda function's session of this role is role chaining, which STS
 * caps at 1 h whatever the role allows, so the URLs roll with every plan write (agent-url-lifetimes.ts).
 */
function createPresignRole(
  scope: Construct,
  signer: iam.Role,
  resources: BackupResources,
  restore: RestoreResources,
): iam.Role {
  const role = new iam.Role(scope, "PresignRole", {
    assumedBy: new iam.ArnPrincipal(signer.roleArn),
    maxSessionDuration: Duration.hours(1),
    description: "etcd-backup: signs the restore agents' presigned S3 URLs",
  });
  const snapshots = snapshotObjectArns(resources);
  const working = restoreObjectArns(resources, restore);
  // The snapshot URL pins the catalogued version: a GET with versionId is s3:GetObjectVersion.
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({ actions: ["s3:GetObject", "s3:GetObjectVersion"], resources: snapshots }),
  );
  if (working.length > 0) {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ["s3:GetObject", "s3:PutObject"], resources: working }),
    );
  }
  const tools = restore.stagedRestoreTools
    ? [resources.storage.bucket.arnForObjects(`${resources.prefix}/_tools/*`)]
    : [];
  if (tools.length > 0) {
    role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ["s3:GetObject"], resources: tools }));
  }
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ["kms:Decrypt", "kms:GenerateDataKey"],
      resources: [resources.storage.key.keyArn],
      conditions: keyUseThroughS3(scope),
    }),
  );
  signer.addToPrincipalPolicy(
    new iam.PolicyStatement({ actions: ["sts:AssumeRole"], resources: [role.roleArn] }),
  );
  acknowledgeWildcardResources(role, snapshots, snapshotObjectsReason);
  acknowledgeWildcardResources(role, working, restoreObjectsReason);
  acknowledgeWildcardResources(
    role,
    tools,
    "Restore tools staged by the operator are named in the targets file: the grant is reading <prefix>/_tools/*, which the agents run only after checking the sha256 the targets file gives.",
  );
  return role;
}

/** Copies one file into the bundle's root after esbuild ran. */
function copyFileHooks(file: string): ICommandHooks {
  const quote = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;
  return {
    beforeBundling: () => [],
    beforeInstall: () => [],
    afterBundling: (_inputDir, outputDir) => [`cp ${quote(file)} ${quote(join(outputDir, basename(file)))}`],
  };
}

function combineHooks(hooks: ICommandHooks[]): ICommandHooks {
  return {
    beforeBundling: (inputDir, outputDir) =>
      hooks.flatMap((hook) => hook.beforeBundling(inputDir, outputDir)),
    beforeInstall: (inputDir, outputDir) => hooks.flatMap((hook) => hook.beforeInstall(inputDir, outputDir)),
    afterBundling: (inputDir, outputDir) => hooks.flatMap((hook) => hook.afterBundling(inputDir, outputDir)),
  };
}

/** Adds the statements one kind of access needs to `role`, scoped to the named clusters. */
function grantAccess(
  scope: Construct,
  role: iam.Role,
  access: StepAccess,
  resources: BackupResources,
  /** The restore resources; throws for a step that declares restore access without them. */
  restoreResources: () => RestoreResources,
): void {
  const { storage, clusterAccess } = resources;
  const clusterObjects = clusterAccess.clusters.map((cluster) =>
    storage.bucket.arnForObjects(`${resources.prefix}/${cluster}/*`),
  );
  const allow = (actions: string[], resourceArns: string[], conditions?: Record<string, unknown>) => {
    if (resourceArns.length === 0) return;
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions, resources: resourceArns, ...(conditions ? { conditions } : {}) }),
    );
  };
  const onRestoreObjects = (actions: string[]) => {
    const arns = restoreObjectArns(resources, restoreResources());
    allow(actions, arns);
    acknowledgeWildcardResources(scope, arns, restoreObjectsReason);
  };
  const onObjects = (actions: string[]) => {
    allow(actions, clusterObjects);
    acknowledgeWildcardResources(
      scope,
      clusterObjects,
      "Snapshot objects are created with new keys under the cluster's prefix: the grant is every key under <prefix>/<cluster>/ of the named clusters, and nothing else in the bucket.",
    );
  };
  // S3 offers no prefix condition on ListBucketMultipartUploads: it lists upload ids and keys, no data.
  const listUploads = () => allow(["s3:ListBucketMultipartUploads"], [storage.bucket.bucketArn]);
  const allowClusterAccess = (access: ClusterAccess) => {
    allow(["secretsmanager:GetSecretValue"], access.secretArns);
    allow(["eks:DescribeCluster"], access.eksClusterArns);
    allow(["sts:AssumeRole"], access.assumedRoleArns);
  };
  const useKeyThroughS3 = (actions: string[]) => allow(actions, [storage.key.keyArn], keyUseThroughS3(scope));

  switch (access) {
    case "catalogue": {
      const table = resources.table.tableArn;
      allow(
        ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"],
        [table, `${table}/index/${CatalogueTable.verifiedByClusterIndex.indexName}`],
        { "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": clusterAccess.clusters } },
      );
      break;
    }
    case "newest-verified":
      allow(
        ["dynamodb:Query"],
        [`${resources.table.tableArn}/index/${CatalogueTable.verifiedByClusterIndex.indexName}`],
        { "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": clusterAccess.clusters } },
      );
      break;
    case "targets":
      allow(["ssm:GetParameter"], [resources.targetsParameter.parameterArn]);
      break;
    case "clusters":
      allowClusterAccess(clusterAccess);
      break;
    case "write-snapshots":
      onObjects([
        "s3:PutObject",
        "s3:PutObjectTagging",
        "s3:PutObjectVersionTagging",
        "s3:AbortMultipartUpload",
        // A whole object whose tagging or catalogue row failed is deleted by its version (discardAfter):
        // without it the version would stay, known to nobody, for the noncurrent-version lifecycle.
        "s3:DeleteObjectVersion",
      ]);
      listUploads();
      // A multipart upload under SSE-KMS generates data keys and decrypts them again for each part.
      useKeyThroughS3(["kms:GenerateDataKey", "kms:Decrypt"]);
      break;
    case "verify-snapshots":
      onObjects(["s3:GetObject", "s3:GetObjectVersion", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"]);
      useKeyThroughS3(["kms:Decrypt"]);
      break;
    case "prune-snapshots":
      onObjects([
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectRetention",
        "s3:GetObjectLegalHold",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:AbortMultipartUpload",
      ]);
      listUploads();
      break;
    case "abort-uploads":
      onObjects(["s3:AbortMultipartUpload"]);
      listUploads();
      break;
    case "read-snapshot-versions": {
      // HeadObject and GetObjectTagging of the catalogued version; neither decrypts, so no key use.
      const arns = snapshotObjectArns(resources);
      allow(
        ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"],
        arns,
      );
      acknowledgeWildcardResources(scope, arns, snapshotObjectsReason);
      break;
    }
    case "etcd-tls":
      allow(["secretsmanager:GetSecretValue"], restoreResources().etcdTlsSecretArns);
      break;
    case "write-restore-plans":
      onRestoreObjects(["s3:PutObject"]);
      useKeyThroughS3(["kms:GenerateDataKey"]);
      break;
    case "read-restore-plans":
      onRestoreObjects(["s3:GetObject"]);
      useKeyThroughS3(["kms:Decrypt"]);
      break;
    case "approvals":
      allow(["dynamodb:PutItem"], [resources.table.tableArn], {
        "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": [approvalsPartition] },
      });
      break;
    case "notify-approvers":
      restoreResources().approvers.grantPublish(role);
      break;
    case "find-agent-instances":
      if (restoreResources().agentInstances.tags.length > 0) {
        allow(["ssm:DescribeInstanceInformation"], ["*"]);
        acknowledgeWildcardResources(
          scope,
          ["*"],
          "ssm:DescribeInstanceInformation supports no resource-level permissions; it only lists managed instances, to find the one a member's instanceTag names.",
        );
      }
      break;
    case "probe-agent-instances": {
      // The document exists only where a target restores through ssm.
      const { agentInstances, freeSpaceDocument } = restoreResources();
      if (!freeSpaceDocument) break;
      grantAgentCommands(scope, role, agentInstances, freeSpaceDocument.arn);
      break;
    }
    case "agent-pod-clusters":
      allowClusterAccess(restoreResources().agentPodClusterAccess);
      break;
    case "presign-urls":
      // The PresignRole, its trust and sts:AssumeRole on it are made with the function (createPresignRole).
      break;
  }
}

/** What the `etcd-backup` commands quoted in restore notices add to find this stack's outputs. */
function operatorCliFlags(stack: Stack): string {
  const stackFlag = stack.stackName === defaultStackName ? [] : [`--stack ${stack.stackName}`];
  return [...stackFlag, `--region ${stack.region}`].join(" ");
}
