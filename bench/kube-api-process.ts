// The stand-in Kubernetes API server in a process of its own, so that its CPU and memory (and those of the
// commands it runs "in the pod") are not counted as the product's. It serves one pod shaped like kubeadm's
// etcd static pod whose flags point at the bench's etcd: exec runs this machine's etcdctl, a port-forward
// to the pod's client port reaches that etcd. Argument: `{ "clientUrl", "dataDir", "etcdctl" }` as JSON (the
// member's flags, and the etcdctl binary to put first on the pod's PATH). Prints one
// JSON line `{ "server", "kubeconfig", "pod" }` once it listens (the kubeconfig file embeds its CA and
// token, as the product's kubeconfig secret must); stops on SIGTERM, SIGINT or when its stdin closes.
import { dirname } from "node:path";
import { startKubeApiStandIn } from "../test/support/kube-api-server/index.js";
import { serveUntilParentGoes } from "./helper-process.js";

export interface KubeApiProcessArguments {
  clientUrl: string;
  dataDir: string;
  etcdctl: string;
}

const { clientUrl, dataDir, etcdctl } = JSON.parse(
  process.argv[2] ?? "{}",
) as Partial<KubeApiProcessArguments>;
if (!clientUrl || !dataDir || !etcdctl) {
  process.stderr.write(
    'usage: kube-api-process \'{"clientUrl":"http://127.0.0.1:2379","dataDir":"/path","etcdctl":"/usr/bin/etcdctl"}\'\n',
  );
  process.exit(2);
}
const pod = { namespace: "kube-system", name: "etcd-bench", container: "etcd" };
const standIn = await startKubeApiStandIn({
  pods: [
    {
      name: pod.name,
      namespace: pod.namespace,
      labels: { component: "etcd", tier: "control-plane" },
      hostNetwork: true,
      containers: [
        {
          name: pod.container,
          image: "registry.k8s.io/etcd:3.5.16-0",
          command: [
            "etcd",
            "--name=member-0",
            `--data-dir=${dataDir}`,
            `--listen-client-urls=${clientUrl}`,
            `--advertise-client-urls=${clientUrl}`,
          ],
          // The bench's etcdctl is the one "in the pod" (ETCDCTL_BINARY may name another).
          env: { PATH: `${dirname(etcdctl)}:${process.env.PATH ?? ""}` },
        },
      ],
    },
  ],
});
serveUntilParentGoes({ server: standIn.url, kubeconfig: standIn.kubeconfigPath, pod }, () => standIn.stop());
