// The handlers log what they do (Powertools JSON lines), and never a secret: the etcd client key and
// certificates fetched from Secrets Manager must not appear in any log line, even at DEBUG.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyLocalHandlerEnvironment } from "../../cli/local/local-handler-environment.js";
import { runLocalBackup } from "../../cli/local/local-workflows.js";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "../support/dynamodb-server.js";
import { type EtcdCluster, startEtcdCluster } from "../support/etcd-cluster.js";
import { type LocalS3, startLocalS3 } from "../support/s3-server.js";
import { makeTempDir } from "../support/temp-dir.js";

const secretArn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:etcd-client-tls-AbCdEf";
let etcd: EtcdCluster;
let s3: LocalS3;
let dynamo: LocalDynamoDb;
let work: { path: string; remove: () => Promise<void> };
let secret: { ca: string; cert: string; key: string };
const secrets = mockClient(SecretsManagerClient);

beforeAll(async () => {
  [etcd, s3, dynamo, work] = await Promise.all([
    startEtcdCluster({ tls: true }),
    startLocalS3(),
    startLocalDynamoDb(),
    makeTempDir("logging"),
  ]);
  const files = etcd.certificates as NonNullable<EtcdCluster["certificates"]>;
  secret = {
    ca: await readFile(files.caFile, "utf8"),
    cert: await readFile(files.clientCertFile, "utf8"),
    key: await readFile(files.clientKeyFile, "utf8"),
  };
  secrets
    .on(GetSecretValueCommand, { SecretId: secretArn })
    .resolves({ SecretString: JSON.stringify(secret) });
  const client = createDynamoDbClient({ endpoint: dynamo.endpoint });
  await createCatalogueTable(client, "catalogue");
  client.destroy();
  const targetsFile = join(work.path, "targets.json");
  await writeFile(
    targetsFile,
    JSON.stringify({
      targets: [
        {
          name: "secure",
          schedule: "rate(1 hour)",
          etcd: { endpoints: etcd.endpoints, tlsSecretArn: secretArn },
        },
      ],
    }),
  );
  applyLocalHandlerEnvironment({
    tableName: "catalogue",
    bucket: s3.bucket,
    prefix: "etcd-backup",
    targetsFile,
    s3,
    dynamo,
    workDir: work.path,
  });
  process.env.POWERTOOLS_LOG_LEVEL = "DEBUG";
});

afterAll(async () => {
  secrets.restore();
  await Promise.all([etcd?.stop(), s3?.stop(), dynamo?.stop()]);
  await work?.remove();
});

describe("handler logs", () => {
  it("describe a backup over mutual TLS without a trace of the client key or certificates", async () => {
    const lines: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      lines.push(String(chunk));
      return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stdout.write;
    let run: Awaited<ReturnType<typeof runLocalBackup>>;
    try {
      run = await runLocalBackup({ cluster: "secure" }, { retryIntervalMs: 0 });
    } finally {
      process.stdout.write = write;
    }
    expect(run.error).toBeUndefined();
    expect(run.status).toBe("SUCCEEDED");
    expect(secrets.commandCalls(GetSecretValueCommand).length).toBeGreaterThan(0);
    const logs = lines.join("");
    expect(logs).toContain("snapshot uploaded");
    expect(logs).toContain("snapshot verified");
    const body = (pem: string) => pem.split("\n").filter((line) => line.length > 40);
    for (const line of [...body(secret.key), ...body(secret.cert), ...body(secret.ca)]) {
      expect(logs).not.toContain(line);
    }
    expect(logs).not.toContain("PRIVATE KEY");
  });
});
