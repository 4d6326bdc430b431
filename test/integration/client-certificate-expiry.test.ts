// The backup's resolve step reports the etcd client certificate's days left on every run (the metric an
// alarm watches), warns within 30 days, and refuses an expired one by name before reaching etcd — here
// against a real etcd serving mutual TLS with certificates from a throw-away CA.
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BackupDependencies } from "../../lambdas/core/backup/backup-dependencies.js";
import { resolveTarget } from "../../lambdas/core/backup/resolve-target-step.js";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import { InvalidInputError } from "../../lambdas/core/errors.js";
import { type EtcdCluster, startEtcdCluster } from "../support/etcd-cluster.js";

let etcd: EtcdCluster;
let notAfter: Date;

beforeAll(async () => {
  etcd = await startEtcdCluster({ tls: true });
  notAfter = new Date(new X509Certificate(etcd.clientTls?.cert as Buffer).validTo);
});

afterAll(async () => {
  await etcd?.stop();
});

const day = 86_400_000;

function dependenciesAt(now: Date) {
  const metrics: Array<{ name: string; value: number }> = [];
  const warnings: string[] = [];
  const targets = parseTargetsFile({
    targets: [
      {
        name: "secure",
        schedule: "rate(1 hour)",
        etcd: {
          endpoints: etcd.endpoints,
          tlsSecretArn: "arn:aws:secretsmanager:eu-west-1:111122223333:secret:etcd-client-AbCdEf",
        },
      },
    ],
  });
  const dependencies = {
    loadTargets: async () => targets,
    loadEtcdTls: async () => etcd.clientTls,
    now: () => now,
    reporter: {
      info: () => {},
      warn: (message: string) => warnings.push(message),
      metric: (name: string, _unit: string, value: number) => metrics.push({ name, value }),
    },
  } as unknown as BackupDependencies;
  return { dependencies, metrics, warnings };
}

describe("the etcd client certificate at each backup", () => {
  it("publishes its days left on every run, without a warning while a month or more remains", async () => {
    const { dependencies, metrics, warnings } = dependenciesAt(new Date(notAfter.getTime() - 200.5 * day));
    const resolved = await resolveTarget(dependencies, { cluster: "secure" });
    expect(resolved.member.endpoint).toMatch(/^https:/);
    expect(metrics).toEqual([{ name: "ClientCertificateDaysLeft", value: 200 }]);
    expect(warnings).toEqual([]);
  });

  it("warns within 30 days, naming the date, and still backs up", async () => {
    const { dependencies, metrics, warnings } = dependenciesAt(new Date(notAfter.getTime() - 9.5 * day));
    await resolveTarget(dependencies, { cluster: "secure" });
    expect(metrics).toEqual([{ name: "ClientCertificateDaysLeft", value: 9 }]);
    expect(warnings).toEqual([
      expect.stringMatching(
        new RegExp(`expires on ${notAfter.toISOString()}, in 9 days; renew it before backups fail$`),
      ),
    ]);
  });

  it("refuses an expired certificate by name, with the fix, publishing nothing", async () => {
    const { dependencies, metrics } = dependenciesAt(new Date(notAfter.getTime() + day));
    const attempt = resolveTarget(dependencies, { cluster: "secure" });
    await expect(attempt).rejects.toBeInstanceOf(InvalidInputError);
    await expect(attempt).rejects.toThrow(/expired on .*; renew it \(kubeadm: kubeadm certs renew\)/);
    expect(metrics).toEqual([]);
  });
});
