// Keys as kube-apiserver writes them, for the local stack to back up and restore.
import { randomBytes } from "node:crypto";

const resources = [
  "pods",
  "configmaps",
  "secrets",
  "services",
  "deployments",
  "events",
  "leases",
  "serviceaccounts",
];
const namespaces = ["default", "kube-system", "payments", "web"];

/** `/registry/<resource>/<namespace>/<name>` keys with protobuf-sized values, a few hundred bytes to a few KiB. */
export function kubernetesShapedKeys(count: number): Array<[string, Buffer]> {
  return Array.from({ length: count }, (_, index) => {
    const resource = resources[index % resources.length] as string;
    const namespace = namespaces[index % namespaces.length] as string;
    // Kubernetes stores objects as protobuf with the "k8s\0" magic prefix.
    const value = Buffer.concat([Buffer.from("k8s\0"), randomBytes(200 + ((index * 7919) % 3000))]);
    return [`/registry/${resource}/${namespace}/object-${index}`, value];
  });
}
