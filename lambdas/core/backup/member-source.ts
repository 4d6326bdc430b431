// The chosen member's source, opened the way the target says: gRPC to its endpoint (direct access), or
// through the Kubernetes API to its pod, read again so that a retry sees the pod as it is now — exec
// (etcdctl in the pod) or grpc through a port-forward. The snapshot step streams from it; the verify step
// asks it for its HashKV.
import type { Target } from "../config/target-config.js";
import { createEtcdClient } from "../etcd/etcd-client.js";
import { createGrpcSnapshotSource } from "../etcd/grpc-snapshot-source.js";
import { loadKubeConfig } from "../kube/step-kube-config.js";
import type { SnapshotSource } from "../snapshot/snapshot-source.js";
import type { BackupDependencies } from "./backup-dependencies.js";
import { kubernetesSourceSettings } from "./resolve-target-step.js";
import type { MemberReach } from "./step-payloads.js";

export async function openMemberSource(
  dependencies: BackupDependencies,
  target: Target,
  member: MemberReach,
): Promise<SnapshotSource> {
  if (!member.pod) {
    const client = createEtcdClient({
      endpoint: member.endpoint,
      tls: await dependencies.loadEtcdTls(target),
    });
    return createGrpcSnapshotSource(client);
  }
  const config = await loadKubeConfig(dependencies, target);
  // Loaded here, not at import: a direct target's cold start need not evaluate the Kubernetes client.
  const { openMemberSnapshotSource, readMemberPod } = await import("../kube/kubernetes-member-source.js");
  const pod = await readMemberPod(config, member.pod);
  const settings = await kubernetesSourceSettings(dependencies, target);
  return openMemberSnapshotSource(config, pod, { ...settings, source: member.source ?? settings.source });
}
