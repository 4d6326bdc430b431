// Where a cluster's etcd members are, by who runs them: kubeadm's static pods (mirrored into kube-system)
// or the Bitnami chart's StatefulSet (in its release's namespace). Apart from discovery so that the
// targets file's schema can use the presets without loading the Kubernetes client.

export interface MemberSelector {
  namespace: string;
  /** A label selector, as `kubectl get pods -l` takes it. */
  selector: string;
  /** The etcd container in each pod. */
  container: string;
}

export const MemberPresets = ["kubeadm", "bitnami"] as const;
export type MemberPreset = (typeof MemberPresets)[number];

/** kubeadm's static pods: /etc/kubernetes/manifests/etcd.yaml, mirrored into kube-system. */
export const kubeadmMembers: MemberSelector = {
  namespace: "kube-system",
  selector: "component=etcd",
  container: "etcd",
};

/** The Bitnami etcd chart's StatefulSet, in the release's namespace. */
export function bitnamiMembers(namespace: string, release?: string): MemberSelector {
  const selector = [
    "app.kubernetes.io/name=etcd",
    ...(release ? [`app.kubernetes.io/instance=${release}`] : []),
  ];
  return { namespace, selector: selector.join(","), container: "etcd" };
}

/**
 * The selector a preset gives, with what was set explicitly taking precedence. The Bitnami preset needs
 * the release's namespace; a release name belongs to it alone.
 */
export function presetMemberSelector(options: {
  preset: MemberPreset;
  release?: string;
  namespace?: string;
  selector?: string;
  container?: string;
}): MemberSelector | { problem: string } {
  if (options.preset === "bitnami" && !options.namespace) {
    return { problem: "the bitnami preset needs the namespace of the chart's release" };
  }
  if (options.release && options.preset !== "bitnami") {
    return { problem: "a release names a Bitnami chart release: use it with the bitnami preset" };
  }
  const preset =
    options.preset === "bitnami" ? bitnamiMembers(options.namespace ?? "", options.release) : kubeadmMembers;
  return {
    namespace: options.namespace ?? preset.namespace,
    selector: options.selector ?? preset.selector,
    container: options.container ?? preset.container,
  };
}
