// The snapshot source of an etcd member found as a pod — `exec` (etcdctl in the pod) or `grpc` through
// a port-forward — and the choice among the discovered members by asking each ready one for its status
// through that same source. Shared by the backup steps and the CLI.
import type { KubeConfig } from "@kubernetes/client-node";
import { describeError, EtcdBackupError, EtcdUnavailableError, InvalidInputError } from "../errors.js";
import type { EtcdTlsMaterial, MemberStatus } from "../etcd/etcd-client.js";
import type { SnapshotSource } from "../snapshot/snapshot-source.js";
import type { CertificateExpiryWarning } from "./certificate-expiry.js";
import { readPod } from "./core-v1-api.js";
import {
  chooseMemberPod,
  type DiscoveredMembers,
  type EtcdMemberPod,
  type MemberHealth,
  memberKey,
  parseEtcdMemberPod,
  readyMembers,
} from "./discover-members.js";
import { createExecSnapshotSource } from "./exec-snapshot-source.js";
import { kubernetesApiFailure } from "./kube-api-failure.js";
import { isKubeAnswer } from "./kube-request.js";
import { createPortForwardSnapshotSource } from "./port-forward-snapshot-source.js";

export type KubernetesSourceKind = "grpc" | "exec";

export interface KubernetesSourceSettings {
  source: KubernetesSourceKind;
  /** exec: TLS files inside the pod; defaults to the member's own --cert-file, --key-file, --trusted-ca-file. */
  podTls?: { cacert?: string | undefined; cert?: string | undefined; key?: string | undefined } | undefined;
  /** grpc: the client's TLS material (a Secrets Manager secret, or the CLI's files). */
  tls?: EtcdTlsMaterial | undefined;
  /** grpc: told when the client certificate is within 30 days of expiry. */
  onWarning?: (warning: CertificateExpiryWarning) => void;
  /** How long a status call may take. */
  callTimeoutMs?: number;
}

/** A source reading the snapshot of `member` the configured way. */
export async function openMemberSnapshotSource(
  config: KubeConfig,
  member: EtcdMemberPod,
  settings: KubernetesSourceSettings,
): Promise<SnapshotSource> {
  const pod = { namespace: member.namespace, name: member.podName, container: member.container };
  if (settings.source === "exec") {
    const podTls = settings.podTls ?? {
      cacert: member.tls.trustedCaFile,
      cert: member.tls.certFile,
      key: member.tls.keyFile,
    };
    return createExecSnapshotSource({
      kubeConfig: config,
      pod,
      etcdctl: {
        endpoint: member.localClientUrl,
        cacert: podTls.cacert,
        cert: podTls.cert,
        key: podTls.key,
      },
      etcdDataDir: member.dataDir,
      rootPasswordEnv: member.rootPasswordEnv,
      statusTimeoutSeconds: settings.callTimeoutMs ? Math.ceil(settings.callTimeoutMs / 1000) : undefined,
    });
  }
  if (!member.listensOnLoopback) {
    throw new InvalidInputError(
      `etcd in pod ${memberKey(member)} listens only on ${member.listenClientUrls.join(", ")}: a port-forward reaches the pod's loopback, so use source "exec" or make etcd listen on 127.0.0.1 too`,
    );
  }
  const https = member.localClientUrl.startsWith("https:");
  if (https && !settings.tls) {
    throw new InvalidInputError(
      `etcd in pod ${memberKey(member)} serves clients over TLS (${member.localClientUrl}) but no client TLS material was given (etcd.tlsSecretArn, or --cacert/--cert/--key)`,
    );
  }
  if (!https && settings.tls) {
    throw new InvalidInputError(
      `etcd in pod ${memberKey(member)} serves clients in plain HTTP (${member.localClientUrl}) but TLS material was given`,
    );
  }
  return createPortForwardSnapshotSource({
    kubeConfig: config,
    pod,
    port: member.clientPort,
    tls: settings.tls,
    callTimeoutMs: settings.callTimeoutMs,
    onWarning: settings.onWarning,
  });
}

export interface ChosenKubernetesMember {
  member: EtcdMemberPod;
  status: MemberStatus;
  /** Open: the caller streams from it or closes it. */
  source: SnapshotSource;
  isLeader: boolean;
}

/**
 * Asks every ready member for its status through its source and chooses one: healthy, not a learner,
 * a follower rather than the leader. The other sources are closed. A refusal that every member got
 * (RBAC, a missing shell) is reported as itself, not as an unavailable etcd.
 */
export async function chooseKubernetesMember(
  config: KubeConfig,
  discovered: DiscoveredMembers,
  settings: KubernetesSourceSettings,
): Promise<ChosenKubernetesMember> {
  const ready = readyMembers(discovered.members);
  if (ready.length === 0) chooseMemberPod(discovered.members); // throws, naming why each is not ready
  const asked = await Promise.all(
    ready.map(async (member) => {
      let source: SnapshotSource | undefined;
      try {
        source = await openMemberSnapshotSource(config, member, settings);
        return { member, source, status: await source.status() };
      } catch (error) {
        source?.close();
        return { member, source: undefined, error };
      }
    }),
  );
  const health = new Map<string, MemberHealth>();
  for (const answer of asked) {
    const key = memberKey(answer.member);
    if ("error" in answer) {
      health.set(key, { healthy: false, problem: describeError(answer.error) });
    } else if (answer.status.errors.length > 0) {
      health.set(key, { healthy: false, problem: answer.status.errors.join("; ") });
    } else if (answer.status.isLearner) {
      health.set(key, { healthy: false, problem: "is a learner" });
    } else {
      health.set(key, { healthy: true, isLeader: answer.status.memberId === answer.status.leaderId });
    }
  }
  const closeAllBut = (kept: SnapshotSource | undefined) => {
    for (const answer of asked) if (answer.source && answer.source !== kept) answer.source.close();
  };
  let chosen: EtcdMemberPod;
  try {
    chosen = chooseMemberPod(discovered.members, health);
  } catch (error) {
    closeAllBut(undefined);
    const refusals = asked.flatMap((answer) =>
      "error" in answer && answer.error instanceof EtcdBackupError && !answer.error.transient
        ? [answer.error]
        : [],
    );
    if (refusals.length === asked.length && refusals[0]) throw refusals[0];
    throw error;
  }
  const answer = asked.find((candidate) => candidate.member === chosen);
  if (!answer?.source || !("status" in answer)) {
    closeAllBut(undefined);
    throw new EtcdUnavailableError(`member ${memberKey(chosen)} was chosen without a status`);
  }
  closeAllBut(answer.source);
  return {
    member: chosen,
    status: answer.status,
    source: answer.source,
    isLeader: answer.status.memberId === answer.status.leaderId,
  };
}

/** Reads one member's pod again (a later step, or a retry after the pod was replaced). */
export async function readMemberPod(
  config: KubeConfig,
  pod: { namespace: string; name: string; container: string },
): Promise<EtcdMemberPod> {
  try {
    return parseEtcdMemberPod(await readPod(config, pod.namespace, pod.name), pod.container);
  } catch (error) {
    const failure = kubernetesApiFailure(error, `cannot read etcd pod ${pod.namespace}/${pod.name}`, config);
    // The pod chosen by the previous step is gone (replaced, evicted): transient, the next run chooses anew.
    if (isKubeAnswer(error, 404)) {
      throw new EtcdUnavailableError(`etcd pod ${pod.namespace}/${pod.name} no longer exists`, {
        cause: error,
      });
    }
    throw failure;
  }
}
