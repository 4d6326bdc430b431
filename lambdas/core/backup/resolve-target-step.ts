// Resolves where this run's snapshot comes from: the target's configuration, the member to read
// (a healthy follower), and the snapshot id, minted once so that retries of the snapshot step reuse it.
// Members are given as endpoints (direct access) or discovered as pods through the Kubernetes API (eks,
// kubeconfig access), where each ready member is asked for its status through the configured source.
// TLS material is looked up again by the step that needs it: secrets never travel through the state
// machine, whose execution history anyone with read access can see.
import { directEndpoints, findTarget, type Target } from "../config/target-config.js";
import { chooseSnapshotMember } from "../etcd/choose-member.js";
import { readCertificateExpiry } from "../kube/certificate-expiry.js";
import type { EtcdMemberPod } from "../kube/discover-members.js";
import type { KubernetesSourceSettings } from "../kube/kubernetes-member-source.js";
import { loadKubeConfig } from "../kube/step-kube-config.js";
import { MetricNames } from "../metric-names.js";
import { newSnapshotId } from "../snapshot/snapshot-naming.js";
import type { BackupDependencies } from "./backup-dependencies.js";
import type { ExecutionInput, MemberReach, ResolvedTarget } from "./step-payloads.js";

export async function resolveTarget(
  dependencies: BackupDependencies,
  input: ExecutionInput,
): Promise<ResolvedTarget> {
  const target = findTarget(await dependencies.loadTargets(), input.cluster);
  await reportClientCertificate(dependencies, target);
  if (target.access.kind !== "direct") return resolveKubernetesTarget(dependencies, target);
  const endpoints = directEndpoints(target);
  const chosen = await chooseSnapshotMember(endpoints, { tls: await dependencies.loadEtcdTls(target) });
  chosen.client.close();
  dependencies.reporter.info("member chosen", {
    endpoint: chosen.client.endpoint,
    memberId: chosen.status.memberId,
    leader: chosen.status.memberId === chosen.status.leaderId,
    dbSize: chosen.status.dbSize,
  });
  return {
    snapshotId: newSnapshotId(dependencies.now()),
    member: {
      endpoint: chosen.client.endpoint,
      memberId: chosen.status.memberId,
      revision: chosen.status.revision,
    },
    peers: endpoints
      .filter((endpoint) => endpoint !== chosen.client.endpoint)
      .map((endpoint) => ({ endpoint })),
  };
}

async function resolveKubernetesTarget(
  dependencies: BackupDependencies,
  target: Target,
): Promise<ResolvedTarget> {
  const config = await loadKubeConfig(dependencies, target);
  // Loaded here, not at import: a direct target's cold start need not evaluate the Kubernetes client.
  const { discoverEtcdMembers, readyPeersOf } = await import("../kube/discover-members.js");
  const { chooseKubernetesMember } = await import("../kube/kubernetes-member-source.js");
  const { namespace, selector, container } = target.etcd;
  const discovered = await discoverEtcdMembers(config, { namespace, selector, container });
  for (const skipped of discovered.skipped) {
    dependencies.reporter.warn("pod matched the selector but has no etcd container", skipped);
  }
  const chosen = await chooseKubernetesMember(
    config,
    discovered,
    await kubernetesSourceSettings(dependencies, target),
  );
  chosen.source.close();
  const { member, status } = chosen;
  dependencies.reporter.info("member chosen", {
    pod: `${member.namespace}/${member.podName}`,
    node: member.nodeName,
    source: target.etcd.source,
    memberId: status.memberId,
    leader: chosen.isLeader,
    dbSize: status.dbSize,
    readyMembers: discovered.members.filter((candidate) => candidate.ready).length,
    members: discovered.members.length,
  });
  return {
    snapshotId: newSnapshotId(dependencies.now()),
    member: {
      endpoint: member.localClientUrl,
      memberId: status.memberId,
      revision: status.revision,
      source: target.etcd.source,
      pod: podOf(member),
    },
    peers: readyPeersOf(discovered.members, member).map((peer) => ({
      endpoint: peer.localClientUrl,
      source: target.etcd.source,
      pod: podOf(peer),
    })),
  };
}

function podOf(member: EtcdMemberPod): NonNullable<MemberReach["pod"]> {
  return {
    namespace: member.namespace,
    name: member.podName,
    container: member.container,
    nodeName: member.nodeName,
  };
}

/** The source settings of a Kubernetes target: pod TLS paths for exec, client TLS material for grpc. */
export async function kubernetesSourceSettings(
  dependencies: BackupDependencies,
  target: Target,
): Promise<KubernetesSourceSettings> {
  if (target.etcd.source === "exec") return { source: "exec", podTls: target.etcd.podTls };
  return {
    source: "grpc",
    tls: await dependencies.loadEtcdTls(target),
  };
}

/**
 * The etcd client certificate's days left, published at every run so that an alarm can watch it (and a
 * renewed certificate clears it), with a warning within 30 days: kubeadm's expire yearly. An expired one
 * fails the run here, by name, instead of as a TLS handshake error.
 */
async function reportClientCertificate(dependencies: BackupDependencies, target: Target): Promise<void> {
  // exec runs etcdctl with the pod's own certificates, which the product never holds.
  if (target.etcd.source === "exec") return;
  const certificate = (await dependencies.loadEtcdTls(target))?.cert;
  if (!certificate) return;
  const { daysLeft, warning } = readCertificateExpiry(certificate, { now: dependencies.now() });
  dependencies.reporter.metric(MetricNames.clientCertificateDaysLeft, "Count", daysLeft);
  if (warning) {
    dependencies.reporter.warn(warning.message, {
      code: warning.code,
      notAfter: warning.notAfter,
      daysLeft: warning.daysLeft,
    });
  }
}
