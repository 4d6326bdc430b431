// The core/v1 calls the product makes, and only those: list and read etcd's pods, create, read and delete
// the restore agents' pods and Secret, and list a pod's events. Bodies and answers are the API's JSON
// (timestamps stay strings).
import type {
  CoreV1Event,
  CoreV1EventList,
  KubeConfig,
  V1Pod,
  V1PodList,
  V1Secret,
} from "@kubernetes/client-node";
import { kubeJsonRequest } from "./kube-request.js";

/** What the product creates and deletes. */
type NamespacedKind = "pod" | "secret";

const namespaced = (namespace: string, kind: NamespacedKind | "event", name?: string) =>
  `/api/v1/namespaces/${encodeURIComponent(namespace)}/${kind}s${name === undefined ? "" : `/${encodeURIComponent(name)}`}`;

export async function listPods(
  config: KubeConfig,
  namespace: string,
  labelSelector: string,
): Promise<V1Pod[]> {
  const list = await kubeJsonRequest<V1PodList>(config, {
    method: "GET",
    path: `${namespaced(namespace, "pod")}?labelSelector=${encodeURIComponent(labelSelector)}`,
    where: `list pods in ${namespace}`,
  });
  return list.items ?? [];
}

export function readPod(config: KubeConfig, namespace: string, name: string): Promise<V1Pod> {
  return kubeJsonRequest<V1Pod>(config, {
    method: "GET",
    path: namespaced(namespace, "pod", name),
    where: `read pod ${namespace}/${name}`,
  });
}

/** The events about one pod (by uid, so that an earlier pod of the same name is not counted). */
export async function listPodEvents(config: KubeConfig, pod: V1Pod): Promise<CoreV1Event[]> {
  const { namespace = "default", name = "", uid = "" } = pod.metadata ?? {};
  const selector = `involvedObject.kind=Pod,involvedObject.name=${name},involvedObject.uid=${uid}`;
  const list = await kubeJsonRequest<CoreV1EventList>(config, {
    method: "GET",
    path: `${namespaced(namespace, "event")}?fieldSelector=${encodeURIComponent(selector)}`,
    where: `list the events of pod ${namespace}/${name}`,
  });
  return list.items ?? [];
}

export function createObject(
  config: KubeConfig,
  namespace: string,
  kind: NamespacedKind,
  body: V1Pod | V1Secret,
): Promise<unknown> {
  return kubeJsonRequest(config, {
    method: "POST",
    path: namespaced(namespace, kind),
    body,
    where: `create ${kind} ${namespace}/${body.metadata?.name ?? ""}`,
  });
}

export function deleteObject(
  config: KubeConfig,
  namespace: string,
  kind: NamespacedKind,
  name: string,
): Promise<unknown> {
  return kubeJsonRequest(config, {
    method: "DELETE",
    path: namespaced(namespace, kind, name),
    where: `delete ${kind} ${namespace}/${name}`,
  });
}
