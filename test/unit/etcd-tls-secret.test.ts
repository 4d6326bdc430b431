// The steps' etcd TLS material on AWS: read from the target's secret, with the target's tlsServerName.
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { mockClient } from "aws-sdk-client-mock";
import { afterEach, describe, expect, it } from "vitest";
import { silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import { createBackupDependencies } from "../../lambdas/handlers/shared/backup-dependencies-from-environment.js";
import type { HandlerEnvironment } from "../../lambdas/handlers/shared/environment.js";

const secrets = mockClient(SecretsManagerClient);
afterEach(() => secrets.reset());

const environment = {
  SNAPSHOT_BUCKET: "b",
  SNAPSHOT_PREFIX: "etcd-backup",
  CATALOGUE_TABLE: "t",
  AWS_REGION: "eu-west-1",
} as unknown as HandlerEnvironment;

function targetWith(etcd: Record<string, unknown>, name: string) {
  const file = parseTargetsFile({
    targets: [
      {
        name,
        schedule: "rate(1 hour)",
        access: { kind: "direct" },
        etcd: { endpoints: ["https://10.0.0.1:2379"], ...etcd },
      },
    ],
  });
  return file.targets[0] as (typeof file.targets)[number];
}

describe("loadEtcdTls", () => {
  it("gives the secret's PEMs, with the name the server certificate must carry when the target names one", async () => {
    secrets
      .on(GetSecretValueCommand)
      .resolves({ SecretString: JSON.stringify({ ca: "CA", cert: "CERT", key: "KEY" }) });
    const dependencies = createBackupDependencies(environment, silentReporter);
    const secretArn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:etcd-client-named";
    const named = await dependencies.loadEtcdTls(
      targetWith(
        { tlsSecretArn: secretArn, tlsServerName: "etcd-0.etcd-headless.etcd.svc.cluster.local" },
        "named",
      ),
    );
    expect(named).toEqual({
      ca: Buffer.from("CA"),
      cert: Buffer.from("CERT"),
      key: Buffer.from("KEY"),
      serverName: "etcd-0.etcd-headless.etcd.svc.cluster.local",
    });
    // The same secret for a target without the name: the cached material carries none.
    const plain = await dependencies.loadEtcdTls(targetWith({ tlsSecretArn: secretArn }, "plain"));
    expect(plain).not.toHaveProperty("serverName");
    expect(secrets.commandCalls(GetSecretValueCommand)).toHaveLength(1);
  });

  it("gives nothing without a secret", async () => {
    const dependencies = createBackupDependencies(environment, silentReporter);
    expect(await dependencies.loadEtcdTls(targetWith({ tlsServerName: "etcd" }, "none"))).toBeUndefined();
  });
});
