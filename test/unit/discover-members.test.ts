// Reading etcd members from pod specs as kubeadm and the Bitnami chart write them, and choosing the one
// to snapshot. Pure: no API server.
import type { V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { EtcdUnavailableError, InvalidInputError } from "../../lambdas/core/errors.js";
import {
  bitnamiMembers,
  chooseMemberPod,
  type EtcdMemberPod,
  kubeadmMembers,
  type MemberHealth,
  parseEtcdMemberPod,
} from "../../lambdas/core/kube/discover-members.js";

/** kubeadm's /etc/kubernetes/manifests/etcd.yaml, as the API server serves its mirror pod. */
function kubeadmPod(node: string, ip: string, overrides: { ready?: boolean; phase?: string } = {}): V1Pod {
  const ready = overrides.ready ?? true;
  return {
    metadata: {
      name: `etcd-${node}`,
      namespace: "kube-system",
      labels: { component: "etcd", tier: "control-plane" },
      annotations: { "kubeadm.kubernetes.io/etcd.advertise-client-urls": `https://${ip}:2379` },
    },
    spec: {
      nodeName: node,
      hostNetwork: true,
      containers: [
        {
          name: "etcd",
          image: "registry.k8s.io/etcd:3.5.16-0",
          command: [
            "etcd",
            `--advertise-client-urls=https://${ip}:2379`,
            "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
            "--client-cert-auth=true",
            "--data-dir=/var/lib/etcd",
            "--experimental-initial-corrupt-check=true",
            `--initial-advertise-peer-urls=https://${ip}:2380`,
            `--initial-cluster=${node}=https://${ip}:2380`,
            "--key-file=/etc/kubernetes/pki/etcd/server.key",
            `--listen-client-urls=https://127.0.0.1:2379,https://${ip}:2379`,
            "--listen-metrics-urls=http://127.0.0.1:2381",
            `--listen-peer-urls=https://${ip}:2380`,
            `--name=${node}`,
            "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
            "--peer-client-cert-auth=true",
            "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
            "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
            "--snapshot-count=10000",
            "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
          ],
        },
      ],
    },
    status: {
      phase: overrides.phase ?? "Running",
      podIP: ip,
      hostIP: ip,
      conditions: [{ type: "Ready", status: ready ? "True" : "False" }],
      containerStatuses: [
        {
          name: "etcd",
          ready,
          restartCount: 0,
          image: "registry.k8s.io/etcd:3.5.16-0",
          imageID: "",
          state: ready ? { running: {} } : { waiting: { reason: "CrashLoopBackOff" } },
        },
      ],
    },
  };
}

/** A pod of the Bitnami chart's StatefulSet: settings in ETCD_* variables, with $(VAR) references. */
function bitnamiPod(index: number, tls: boolean): V1Pod {
  const scheme = tls ? "https" : "http";
  const env = [
    { name: "BITNAMI_DEBUG", value: "false" },
    { name: "MY_POD_IP", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "status.podIP" } } },
    { name: "MY_POD_NAME", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.name" } } },
    { name: "MY_STS_NAME", value: "etcd" },
    { name: "ETCDCTL_API", value: "3" },
    { name: "ETCD_ON_K8S", value: "yes" },
    { name: "ETCD_NAME", value: "$(MY_POD_NAME)" },
    { name: "ETCD_DATA_DIR", value: "/bitnami/etcd/data" },
    { name: "ETCD_LOG_LEVEL", value: "info" },
    { name: "ALLOW_NONE_AUTHENTICATION", value: "no" },
    { name: "ETCD_ROOT_PASSWORD", valueFrom: { secretKeyRef: { name: "etcd", key: "etcd-root-password" } } },
    {
      name: "ETCD_ADVERTISE_CLIENT_URLS",
      value: `${scheme}://$(MY_POD_NAME).etcd-headless.storage.svc.cluster.local:2379,${scheme}://etcd.storage.svc.cluster.local:2379`,
    },
    { name: "ETCD_LISTEN_CLIENT_URLS", value: `${scheme}://0.0.0.0:2379` },
    {
      name: "ETCD_INITIAL_ADVERTISE_PEER_URLS",
      value: "http://$(MY_POD_NAME).etcd-headless.storage.svc.cluster.local:2380",
    },
    { name: "ETCD_LISTEN_PEER_URLS", value: "http://0.0.0.0:2380" },
    ...(tls
      ? [
          { name: "ETCD_CERT_FILE", value: "/opt/bitnami/etcd/certs/client/tls.crt" },
          { name: "ETCD_KEY_FILE", value: "/opt/bitnami/etcd/certs/client/tls.key" },
          { name: "ETCD_CLIENT_CERT_AUTH", value: "true" },
          { name: "ETCD_TRUSTED_CA_FILE", value: "/opt/bitnami/etcd/certs/client/ca.crt" },
        ]
      : []),
  ];
  return {
    metadata: {
      name: `etcd-${index}`,
      namespace: "storage",
      labels: {
        "app.kubernetes.io/name": "etcd",
        "app.kubernetes.io/instance": "etcd",
        "app.kubernetes.io/component": "etcd",
        "statefulset.kubernetes.io/pod-name": `etcd-${index}`,
      },
    },
    spec: {
      nodeName: `worker-${index}`,
      containers: [
        {
          name: "etcd",
          image: "docker.io/bitnami/etcd:3.5.17-debian-12-r0",
          env,
          ports: [{ name: "client", containerPort: 2379, protocol: "TCP" }],
        },
      ],
    },
    status: {
      phase: "Running",
      podIP: `10.0.1.${10 + index}`,
      conditions: [{ type: "Ready", status: "True" }],
      containerStatuses: [{ name: "etcd", ready: true, restartCount: 0, image: "", imageID: "" }],
    },
  };
}

describe("parseEtcdMemberPod", () => {
  it("reads a kubeadm static pod: loopback client URL for exec and port-forward, TLS files, data dir, name", () => {
    const member = parseEtcdMemberPod(kubeadmPod("cp-1", "10.0.0.11"), "etcd");
    expect(member).toEqual({
      namespace: "kube-system",
      podName: "etcd-cp-1",
      container: "etcd",
      nodeName: "cp-1",
      podIP: "10.0.0.11",
      hostNetwork: true,
      image: "registry.k8s.io/etcd:3.5.16-0",
      phase: "Running",
      ready: true,
      notReady: undefined,
      memberName: "cp-1",
      advertiseClientUrls: ["https://10.0.0.11:2379"],
      listenClientUrls: ["https://127.0.0.1:2379", "https://10.0.0.11:2379"],
      localClientUrl: "https://127.0.0.1:2379",
      listensOnLoopback: true,
      clientPort: 2379,
      tls: {
        certFile: "/etc/kubernetes/pki/etcd/server.crt",
        keyFile: "/etc/kubernetes/pki/etcd/server.key",
        trustedCaFile: "/etc/kubernetes/pki/etcd/ca.crt",
      },
      clientCertAuth: true,
      dataDir: "/var/lib/etcd",
      configFile: undefined,
      rootPasswordEnv: undefined,
    });
  });

  it("reads a Bitnami StatefulSet pod from its ETCD_* environment, expanding $(VAR) and field references", () => {
    const member = parseEtcdMemberPod(bitnamiPod(1, true), "etcd");
    expect(member).toMatchObject({
      namespace: "storage",
      podName: "etcd-1",
      nodeName: "worker-1",
      hostNetwork: false,
      memberName: "etcd-1",
      advertiseClientUrls: [
        "https://etcd-1.etcd-headless.storage.svc.cluster.local:2379",
        "https://etcd.storage.svc.cluster.local:2379",
      ],
      listenClientUrls: ["https://0.0.0.0:2379"],
      // etcd listens on every address: loopback reaches it from inside the pod and through a port-forward
      localClientUrl: "https://127.0.0.1:2379",
      listensOnLoopback: true,
      clientPort: 2379,
      tls: {
        certFile: "/opt/bitnami/etcd/certs/client/tls.crt",
        keyFile: "/opt/bitnami/etcd/certs/client/tls.key",
        trustedCaFile: "/opt/bitnami/etcd/certs/client/ca.crt",
      },
      clientCertAuth: true,
      dataDir: "/bitnami/etcd/data",
      rootPasswordEnv: "ETCD_ROOT_PASSWORD",
    });
    expect(parseEtcdMemberPod(bitnamiPod(0, false), "etcd")).toMatchObject({
      localClientUrl: "http://127.0.0.1:2379",
      tls: { certFile: undefined, keyFile: undefined, trustedCaFile: undefined },
      clientCertAuth: false,
    });
  });

  it("lets flags win over the environment, reads `--flag value` and shell scripts, and falls back to etcd's defaults", () => {
    const pod = kubeadmPod("cp-1", "10.0.0.11");
    const container = pod.spec?.containers[0];
    if (!container) throw new Error("no container");
    container.command = [
      "/bin/sh",
      "-ec",
      "exec etcd --name $(NODE) --listen-client-urls http://0.0.0.0:12379 --client-cert-auth --data-dir=/data",
    ];
    container.env = [
      { name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
      { name: "ETCD_LISTEN_CLIENT_URLS", value: "http://127.0.0.1:1" },
      { name: "ETCD_DATA_DIR", value: "/ignored" },
    ];
    expect(parseEtcdMemberPod(pod, "etcd")).toMatchObject({
      memberName: "cp-1",
      listenClientUrls: ["http://0.0.0.0:12379"],
      localClientUrl: "http://127.0.0.1:12379",
      clientPort: 12379,
      clientCertAuth: true,
      dataDir: "/data",
    });

    container.command = ["etcd"];
    container.env = [];
    expect(parseEtcdMemberPod(pod, "etcd")).toMatchObject({
      listenClientUrls: [],
      advertiseClientUrls: ["http://localhost:2379"],
      localClientUrl: "http://127.0.0.1:2379",
      dataDir: undefined,
      memberName: undefined,
    });
  });

  it("notes when etcd listens on no loopback address, which a port-forward cannot reach", () => {
    const pod = kubeadmPod("cp-1", "10.0.0.11");
    const container = pod.spec?.containers[0];
    if (!container) throw new Error("no container");
    container.command = ["etcd", "--listen-client-urls=https://10.0.0.11:2379"];
    expect(parseEtcdMemberPod(pod, "etcd")).toMatchObject({
      localClientUrl: "https://10.0.0.11:2379",
      listensOnLoopback: false,
    });
  });

  it("says why a pod is not ready: phase, container state, deletion", () => {
    expect(parseEtcdMemberPod(kubeadmPod("cp-2", "10.0.0.12", { ready: false }), "etcd")).toMatchObject({
      ready: false,
      notReady: "container etcd is not ready (CrashLoopBackOff)",
    });
    expect(parseEtcdMemberPod(kubeadmPod("cp-2", "10.0.0.12", { phase: "Pending" }), "etcd")).toMatchObject({
      ready: false,
      notReady: "is Pending",
    });
    const deleting = kubeadmPod("cp-2", "10.0.0.12");
    (deleting.metadata as { deletionTimestamp?: Date }).deletionTimestamp = new Date();
    expect(parseEtcdMemberPod(deleting, "etcd").notReady).toBe("is being deleted");
  });

  it("names the containers a pod has when the etcd container is missing", () => {
    expect(() => parseEtcdMemberPod(kubeadmPod("cp-1", "10.0.0.11"), "etcd-server")).toThrow(
      InvalidInputError,
    );
    expect(() => parseEtcdMemberPod(kubeadmPod("cp-1", "10.0.0.11"), "etcd-server")).toThrow(
      'pod kube-system/etcd-cp-1 has no container "etcd-server" (it has: etcd): set etcd.container',
    );
  });
});

describe("presets", () => {
  it("kubeadm: kube-system, component=etcd, container etcd; Bitnami: the release's namespace and name label", () => {
    expect(kubeadmMembers).toEqual({
      namespace: "kube-system",
      selector: "component=etcd",
      container: "etcd",
    });
    expect(bitnamiMembers("storage")).toEqual({
      namespace: "storage",
      selector: "app.kubernetes.io/name=etcd",
      container: "etcd",
    });
    expect(bitnamiMembers("storage", "events").selector).toBe(
      "app.kubernetes.io/name=etcd,app.kubernetes.io/instance=events",
    );
  });
});

describe("chooseMemberPod", () => {
  const members = (["cp-1", "cp-2", "cp-3"] as const).map((node, index) =>
    parseEtcdMemberPod(kubeadmPod(node, `10.0.0.${11 + index}`), "etcd"),
  );
  const [first, second, third] = members as [EtcdMemberPod, EtcdMemberPod, EtcdMemberPod];
  const health = (entries: Array<[EtcdMemberPod, MemberHealth]>) =>
    new Map(entries.map(([member, value]) => [`${member.namespace}/${member.podName}`, value]));

  it("prefers a known follower to the leader, whatever the order", () => {
    const chosen = chooseMemberPod(
      members,
      health([
        [first, { healthy: true, isLeader: true }],
        [second, { healthy: true, isLeader: false }],
        [third, { healthy: true, isLeader: false }],
      ]),
    );
    expect(chosen.podName).toBe("etcd-cp-2");

    // Every order of the pods and of the health entries, with the leader in every place: always the first
    // follower by name.
    const permutations = <T>(items: readonly T[]): T[][] =>
      items.length <= 1
        ? [[...items]]
        : items.flatMap((item, index) =>
            permutations([...items.slice(0, index), ...items.slice(index + 1)]).map((rest) => [
              item,
              ...rest,
            ]),
          );
    const orders = permutations(members);
    expect(orders).toHaveLength(6);
    for (const leader of members) {
      const expected = members.find((member) => member !== leader)?.podName;
      for (const order of orders) {
        const entries = order.map((member): [EtcdMemberPod, MemberHealth] => [
          member,
          { healthy: true, isLeader: member === leader },
        ]);
        for (const healthOrder of [entries, [...entries].reverse()]) {
          const choice = chooseMemberPod(order, health(healthOrder)).podName;
          expect(choice, `leader ${leader.podName}, order ${order.map((member) => member.podName)}`).toBe(
            expected,
          );
          expect(choice).not.toBe(leader.podName);
        }
      }
    }
  });

  it("takes a member of unknown role before the leader, and the first by name without any knowledge", () => {
    expect(chooseMemberPod(members, health([[first, { healthy: true, isLeader: true }]])).podName).toBe(
      "etcd-cp-2",
    );
    expect(chooseMemberPod([third, second, first]).podName).toBe("etcd-cp-1");
  });

  it("takes the leader when it is the only healthy ready member", () => {
    const notReady = parseEtcdMemberPod(kubeadmPod("cp-2", "10.0.0.12", { ready: false }), "etcd");
    const chosen = chooseMemberPod(
      [first, notReady, third],
      health([
        [first, { healthy: true, isLeader: true }],
        [third, { healthy: false, problem: "alarm NOSPACE" }],
      ]),
    );
    expect(chosen.podName).toBe("etcd-cp-1");
  });

  it("fails, transiently, naming why each pod is not ready or not healthy", () => {
    const notReady = [
      parseEtcdMemberPod(kubeadmPod("cp-1", "10.0.0.11", { ready: false }), "etcd"),
      parseEtcdMemberPod(kubeadmPod("cp-2", "10.0.0.12", { phase: "Pending" }), "etcd"),
    ];
    expect(() => chooseMemberPod(notReady)).toThrow(EtcdUnavailableError);
    expect(() => chooseMemberPod(notReady)).toThrow(
      "no etcd pod is ready: kube-system/etcd-cp-1 container etcd is not ready (CrashLoopBackOff); kube-system/etcd-cp-2 is Pending",
    );
    expect(() =>
      chooseMemberPod([first], health([[first, { healthy: false, problem: "context deadline exceeded" }]])),
    ).toThrow("no ready etcd member is healthy: kube-system/etcd-cp-1: context deadline exceeded");
  });
});
