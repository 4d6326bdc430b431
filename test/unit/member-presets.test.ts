import { describe, expect, it } from "vitest";
import { parseTargetsFile } from "../../lambdas/core/config/target-config.js";
import { presetMemberSelector } from "../../lambdas/core/kube/member-presets.js";

const withEtcd = (etcd: Record<string, unknown>) => ({
  targets: [
    {
      name: "apps",
      schedule: "rate(1 hour)",
      access: { kind: "kubeconfig", secretArn: "arn:aws:secretsmanager:eu-west-1:111122223333:secret:k" },
      etcd,
    },
  ],
});
const etcdOf = (etcd: Record<string, unknown>) => parseTargetsFile(withEtcd(etcd)).targets[0]?.etcd;

describe("etcd member presets", () => {
  it("default to kubeadm's static pods, read through a port-forward", () => {
    expect(etcdOf({})).toMatchObject({
      preset: "kubeadm",
      namespace: "kube-system",
      selector: "component=etcd",
      container: "etcd",
      source: "grpc",
    });
  });

  it("find the Bitnami chart's StatefulSet in its release's namespace, read through exec", () => {
    expect(etcdOf({ preset: "bitnami", namespace: "storage", release: "etcd-main" })).toMatchObject({
      namespace: "storage",
      selector: "app.kubernetes.io/name=etcd,app.kubernetes.io/instance=etcd-main",
      container: "etcd",
      source: "exec",
    });
    expect(etcdOf({ preset: "bitnami", namespace: "storage", source: "grpc" })).toMatchObject({
      selector: "app.kubernetes.io/name=etcd",
      source: "grpc",
    });
  });

  it("give way to what the targets file sets itself", () => {
    expect(etcdOf({ selector: "tier=etcd", namespace: "infra" })).toMatchObject({
      namespace: "infra",
      selector: "tier=etcd",
    });
  });

  it("refuse the Bitnami preset without a namespace, and a release without the Bitnami preset", () => {
    expect(() => parseTargetsFile(withEtcd({ preset: "bitnami" }))).toThrow(
      /needs the namespace of the chart's release/,
    );
    expect(() => parseTargetsFile(withEtcd({ release: "etcd-main" }))).toThrow(
      /use it with the bitnami preset/,
    );
    expect(presetMemberSelector({ preset: "kubeadm", release: "x" })).toEqual({
      problem: "a release names a Bitnami chart release: use it with the bitnami preset",
    });
  });

  it("survive a second parse unchanged, as the deployed stack stores the parsed file and the steps read it", () => {
    const once = parseTargetsFile(
      withEtcd({ preset: "bitnami", namespace: "storage", release: "etcd-main" }),
    );
    expect(parseTargetsFile(JSON.parse(JSON.stringify(once)))).toEqual(once);
  });
});
