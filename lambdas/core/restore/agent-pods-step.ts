// The `pod` executor's two steps: start the agent pods (while the API is still up, before any barrier
// stops anything), and remove them and their Secret once the restore has ended. Removal is best effort: by
// then the API is the restored one, which may not know these objects at all, and a leftover is reported,
// never a failure of a restore that has finished.
import { findTarget, type RestoreLayout, type Target } from "../config/target-config.js";
import { describeError, InvalidInputError } from "../errors.js";
import { createObject, deleteObject, listPodEvents, readPod } from "../kube/core-v1-api.js";
import { kubernetesApiFailure } from "../kube/kube-api-failure.js";
import { isKubeAnswer, KubeRequestError } from "../kube/kube-request.js";
import { loadKubeConfig } from "../kube/step-kube-config.js";
import { describeAgentPodState } from "./agent-pod-state.js";
import {
  type AgentPodMember,
  agentPodName,
  agentSecretName,
  buildAgentPod,
  buildAgentSecret,
} from "./agent-pods.js";
import type { RestoreDependencies } from "./restore-dependencies.js";
import type { AgentLaunch, RestoreInput } from "./restore-payloads.js";

function podLayout(target: Target): RestoreLayout {
  const layout = target.restore;
  if (!layout) throw new InvalidInputError(`target ${target.name} has no restore layout`);
  if (layout.executor !== "pod") {
    throw new InvalidInputError(
      `target ${target.name} runs its restore agents with ${layout.executor}, not pod`,
    );
  }
  return layout;
}

/** The members of the layout, in its order (which names the pods), with the launch URLs of WritePlans. */
function agentPodMembers(layout: RestoreLayout, agents: readonly AgentLaunch[]): AgentPodMember[] {
  return layout.members.map((member) => {
    const launch = agents.find((agent) => agent.member === member.name);
    if (!launch?.planUrl || !launch.statusUrl) {
      throw new InvalidInputError(`no launch URLs for member ${member.name}: WritePlans wrote no pod launch`);
    }
    if (!member.nodeName) throw new InvalidInputError(`restore member ${member.name} names no nodeName`);
    return {
      member: member.name,
      nodeName: member.nodeName,
      dataDir: member.dataDir,
      manifestDir: member.manifestDir,
      planUrl: launch.planUrl,
      statusUrl: launch.statusUrl,
    };
  });
}

/** A request to the API, through the removal's guard against an unreachable API. */
type ApiCall = <T>(request: () => Promise<T>) => Promise<T>;

const alreadyExists = (error: unknown) => isKubeAnswer(error, 409);
const notFound = (error: unknown) => isKubeAnswer(error, 404);

/**
 * Creates the restore's Secret, then one pod per member. An object that exists already was created by an
 * earlier attempt of this step (the names derive from the restore id, which is the execution's name), so
 * a retry goes on from where that attempt stopped.
 */
export async function startAgentPods(
  dependencies: RestoreDependencies,
  input: RestoreInput,
  restoreId: string,
  agents: readonly AgentLaunch[],
): Promise<{
  namespace: string;
  secret: string;
  pods: Array<{ member: string; pod: string; nodeName: string }>;
}> {
  const target = findTarget(await dependencies.loadTargets(), input.cluster);
  const layout = podLayout(target);
  const members = agentPodMembers(layout, agents);
  const namespace = layout.pod.namespace;
  const config = await loadKubeConfig(dependencies, target);
  const secret = buildAgentSecret(restoreId, namespace, await dependencies.loadAgentScript(), members);
  try {
    await createObject(config, namespace, "secret", secret);
  } catch (error) {
    if (!alreadyExists(error)) {
      throw kubernetesApiFailure(error, `cannot create the restore agents' secret in ${namespace}`, config);
    }
  }
  const pods: Array<{ member: string; pod: string; nodeName: string }> = [];
  for (const [index, member] of members.entries()) {
    const pod = buildAgentPod(layout, restoreId, member, index);
    try {
      await createObject(config, namespace, "pod", pod);
    } catch (error) {
      if (!alreadyExists(error)) {
        throw kubernetesApiFailure(
          error,
          `cannot create the restore agent pod of ${member.member} on node ${member.nodeName} in ${namespace}`,
          config,
        );
      }
    }
    pods.push({ member: member.member, pod: pod.metadata?.name as string, nodeName: member.nodeName });
  }
  dependencies.reporter.info("restore agent pods created", { restoreId, namespace, pods: pods.length });
  return { namespace, secret: agentSecretName(restoreId), pods };
}

/**
 * Deletes the agent pods and the Secret of a restore, by name; with `describePods` (the failure paths),
 * saying first what became of each pod, in `agentPods` — an agent that never reported has only its pod to
 * tell why. Never throws for the API: what could not be removed is listed in `leftovers`, with the reason,
 * for the notification and the log.
 */
export async function removeAgentPods(
  dependencies: RestoreDependencies,
  input: RestoreInput,
  restoreId: string,
  options: { describePods?: boolean } = {},
): Promise<{ removed: string[]; leftovers: string[]; agentPods: string[] }> {
  const target = findTarget(await dependencies.loadTargets(), input.cluster);
  const layout = podLayout(target);
  const namespace = layout.pod.namespace;
  const objects = [
    ...layout.members.map((member, index) => ({
      kind: "pod" as const,
      name: agentPodName(restoreId, index),
      member: member.name,
    })),
    { kind: "secret" as const, name: agentSecretName(restoreId), member: undefined },
  ];
  const removed: string[] = [];
  const leftovers: string[] = [];
  const agentPods: string[] = [];
  let config: Awaited<ReturnType<typeof loadKubeConfig>>;
  try {
    config = await loadKubeConfig(dependencies, target);
  } catch (error) {
    const reason = describeError(error);
    return {
      removed,
      leftovers: objects.map((object) => `${object.kind}/${object.name}: ${reason}`),
      agentPods,
    };
  }
  // Once the API cannot be reached, the next calls would each wait out the same timeout, and a few of
  // them outlast the step's own bound: they fail at once with the first one's error instead.
  let unreachable: KubeRequestError | undefined;
  const call: ApiCall = async (request) => {
    if (unreachable) throw unreachable;
    try {
      return await request();
    } catch (error) {
      if (error instanceof KubeRequestError && error.failure.kind === "unreachable") unreachable = error;
      throw error;
    }
  };
  for (const object of objects) {
    if (object.kind === "pod" && options.describePods) {
      agentPods.push(
        `${object.name} (${object.member}): ${await lastPodState(call, config, namespace, object.name)}`,
      );
    }
    try {
      await call(() => deleteObject(config, namespace, object.kind, object.name));
      removed.push(`${object.kind}/${object.name}`);
    } catch (error) {
      // The restored API may never have heard of them: nothing is left to remove.
      if (notFound(error)) continue;
      const failure = kubernetesApiFailure(error, `cannot delete ${object.kind} ${object.name}`, config);
      leftovers.push(`${object.kind}/${object.name}: ${failure.message}`);
    }
  }
  if (leftovers.length > 0) {
    dependencies.reporter.warn("restore agent objects left behind", {
      restoreId,
      namespace,
      leftovers,
      agentPods,
    });
  } else {
    dependencies.reporter.info("restore agent pods removed", { restoreId, namespace, removed, agentPods });
  }
  return { removed, leftovers, agentPods };
}

/**
 * The pod's state as one line, with its latest Warning event; not found and unreadable are states too
 * (the restored API may not know the pod). Events are a best effort: without them the state stands.
 */
async function lastPodState(
  call: ApiCall,
  config: Awaited<ReturnType<typeof loadKubeConfig>>,
  namespace: string,
  name: string,
): Promise<string> {
  let pod: Awaited<ReturnType<typeof readPod>>;
  try {
    pod = await call(() => readPod(config, namespace, name));
  } catch (error) {
    if (notFound(error)) return "not found";
    return `unreadable: ${kubernetesApiFailure(error, `cannot read pod ${name}`, config).message}`;
  }
  try {
    return describeAgentPodState(pod, await call(() => listPodEvents(config, pod)));
  } catch (error) {
    const reason = kubernetesApiFailure(error, "its events could not be read", config).message;
    return `${describeAgentPodState(pod)} (${reason})`;
  }
}
