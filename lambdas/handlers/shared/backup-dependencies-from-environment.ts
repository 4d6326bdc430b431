// Builds the backup steps' dependencies from the Lambda environment: clients once per cold start,
// the targets file and TLS secrets fetched once and kept.
import { readFile } from "node:fs/promises";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { GetParameterCommand, SSMClient } from "@aws-sdk/client-ssm";
import type { KubeConfig } from "@kubernetes/client-node";
import type { BackupDependencies, StepReporter } from "../../core/backup/backup-dependencies.js";
import { CatalogueRepository } from "../../core/catalogue/catalogue-repository.js";
import { ClusterLeases } from "../../core/catalogue/cluster-lease.js";
import { parseTargetsFile, type Target, type TargetsFile } from "../../core/config/target-config.js";
import { InvalidInputError } from "../../core/errors.js";
import type { EtcdTlsMaterial } from "../../core/etcd/etcd-client.js";
import { loadKubeConfigForAccess } from "../../core/kube/kube-config.js";
import { createDynamoDbClient, createS3Client } from "../../core/store/aws-clients.js";
import type { HandlerEnvironment } from "./environment.js";

let targets: Promise<TargetsFile> | undefined;
const tlsBySecret = new Map<string, Promise<EtcdTlsMaterial>>();
/** Per access (EKS cluster or kubeconfig secret): DescribeCluster and the secret are read once per cold start. */
const kubeConfigByAccess = new Map<string, Promise<KubeConfig>>();

export function createBackupDependencies(
  environment: HandlerEnvironment,
  reporter: StepReporter,
): BackupDependencies {
  const s3 = createS3Client({ endpoint: environment.S3_ENDPOINT });
  const dynamo = createDynamoDbClient({ endpoint: environment.DYNAMODB_ENDPOINT });
  const tableName = environment.CATALOGUE_TABLE;
  return {
    s3,
    catalogue: new CatalogueRepository({ client: dynamo, tableName }),
    leases: new ClusterLeases({ client: dynamo, tableName }),
    bucket: environment.SNAPSHOT_BUCKET,
    prefix: environment.SNAPSHOT_PREFIX,
    kmsKeyId: environment.SNAPSHOT_KMS_KEY_ID,
    stagingDir: environment.STAGING_DIR,
    loadTargets: () => {
      targets ??= loadTargetsFile(environment).catch((error: unknown) => {
        targets = undefined;
        throw error;
      });
      return targets;
    },
    loadEtcdTls: (target) => loadEtcdTls(target),
    loadKubeConfig: (target) => loadKubeConfig(target),
    now: () => new Date(),
    reporter,
  };
}

async function loadTargetsFile(environment: HandlerEnvironment): Promise<TargetsFile> {
  if (environment.TARGETS_FILE) {
    return parseTargetsFile(
      JSON.parse(await readFile(environment.TARGETS_FILE, "utf8")),
      environment.TARGETS_FILE,
    );
  }
  const name = environment.TARGETS_PARAMETER_NAME as string;
  const reply = await new SSMClient({}).send(new GetParameterCommand({ Name: name }));
  return parseTargetsFile(JSON.parse(reply.Parameter?.Value ?? "null"), `SSM parameter ${name}`);
}

/** The secret holds JSON `{ "ca": PEM, "cert": PEM, "key": PEM }`; it is never logged or returned. */
function loadEtcdTls(target: Target): Promise<EtcdTlsMaterial | undefined> {
  const secretArn = target.etcd.tlsSecretArn;
  if (!secretArn) return Promise.resolve(undefined);
  let material = tlsBySecret.get(secretArn);
  if (!material) {
    material = new SecretsManagerClient({})
      .send(new GetSecretValueCommand({ SecretId: secretArn }))
      .then((reply) => {
        const value = JSON.parse(reply.SecretString ?? "{}") as { ca?: string; cert?: string; key?: string };
        if (!value.cert || !value.key) {
          throw new InvalidInputError(
            `secret ${secretArn} must hold JSON with "cert" and "key" (and "ca") in PEM`,
          );
        }
        return {
          ca: value.ca ? Buffer.from(value.ca) : undefined,
          cert: Buffer.from(value.cert),
          key: Buffer.from(value.key),
        };
      });
    material.catch(() => tlsBySecret.delete(secretArn));
    tlsBySecret.set(secretArn, material);
  }
  return material;
}

/**
 * The KubeConfig of an `eks` or `kubeconfig` target, kept for the function's lifetime: its EKS token
 * provider refreshes the token itself. The kubeconfig secret holds the kubeconfig text (YAML or JSON).
 */
function loadKubeConfig(target: Target): Promise<KubeConfig> {
  const access = target.access;
  if (access.kind === "direct") {
    return Promise.reject(
      new InvalidInputError(`target ${target.name} has direct access: no Kubernetes API`),
    );
  }
  const key = JSON.stringify(access);
  let config = kubeConfigByAccess.get(key);
  if (!config) {
    config = loadKubeConfigForAccess(access, {
      readSecret: async (secretArn) => {
        const reply = await new SecretsManagerClient({}).send(
          new GetSecretValueCommand({ SecretId: secretArn }),
        );
        if (!reply.SecretString) {
          throw new InvalidInputError(
            `secret ${secretArn} holds no text: it must hold the kubeconfig (YAML)`,
          );
        }
        return reply.SecretString;
      },
    });
    config.catch(() => kubeConfigByAccess.delete(key));
    kubeConfigByAccess.set(key, config);
  }
  return config;
}
