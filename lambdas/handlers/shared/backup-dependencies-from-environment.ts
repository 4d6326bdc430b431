// Builds the backup steps' dependencies from the Lambda environment: clients once per cold start,
// the targets file fetched once and kept, TLS secrets for a few minutes. The Kubernetes access is added by the steps
// that reach the API (kube-config-from-environment.ts), so that the others' bundles stay small.
import { readFile } from "node:fs/promises";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { GetParameterCommand, SSMClient } from "@aws-sdk/client-ssm";
import type { BackupDependencies, StepReporter } from "../../core/backup/backup-dependencies.js";
import { CatalogueRepository } from "../../core/catalogue/catalogue-repository.js";
import { ClusterLeases } from "../../core/catalogue/cluster-lease.js";
import { parseTargetsFile, type Target, type TargetsFile } from "../../core/config/target-config.js";
import { InvalidInputError } from "../../core/errors.js";
import type { EtcdTlsMaterial } from "../../core/etcd/etcd-client.js";
import { createDynamoDbClient, createS3Client } from "../../core/store/aws-clients.js";
import type { HandlerEnvironment } from "./environment.js";
import { ExpiringCache, secretCacheMs } from "./expiring-cache.js";

let targets: Promise<TargetsFile> | undefined;
/** Re-read after a while: a certificate renewed in its secret reaches warm functions within minutes. */
const tlsBySecret = new ExpiringCache<EtcdTlsMaterial>(secretCacheMs);

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

/**
 * The secret holds JSON `{ "ca": PEM, "cert": PEM, "key": PEM }`; it is never logged or returned. The
 * target's tlsServerName goes with it.
 */
async function loadEtcdTls(target: Target): Promise<EtcdTlsMaterial | undefined> {
  const material = await loadTlsSecret(target.etcd.tlsSecretArn);
  const serverName = target.etcd.tlsServerName;
  return material && serverName ? { ...material, serverName } : material;
}

function loadTlsSecret(secretArn: string | undefined): Promise<EtcdTlsMaterial | undefined> {
  if (!secretArn) return Promise.resolve(undefined);
  return tlsBySecret.get(secretArn, () =>
    new SecretsManagerClient({}).send(new GetSecretValueCommand({ SecretId: secretArn })).then((reply) => {
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
    }),
  );
}
