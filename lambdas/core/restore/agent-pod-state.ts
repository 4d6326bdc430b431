// One line on what became of a restore agent's pod, read just before it is removed: where an agent never
// reported (its image could not be pulled, a host path is missing, admission or scheduling refused it), the
// pod's own state is the only account of why, and removing the pod would take it away.
import type { CoreV1Event, V1ContainerStatus, V1Pod } from "@kubernetes/client-node";

/**
 * E.g. `Pending — ContainerCreating; FailedMount: MountVolume.SetUp failed …`, `Failed — exit 2 (Error)`,
 * `Succeeded`. A pod that did not run to completion also gets its latest Warning event: the kubelet
 * says why a volume could not be mounted or an image pulled only there, not in the pod's status.
 */
export function describeAgentPodState(pod: V1Pod, events: readonly CoreV1Event[] = []): string {
  const phase = pod.status?.phase ?? "Unknown";
  const details = [
    ...(pod.status?.containerStatuses ?? []).map(describeContainer),
    // The kubelet's reason for the whole pod: Evicted, DeadlineExceeded, NodeLost, …
    joined(pod.status?.reason, pod.status?.message),
    unscheduled(pod),
    phase === "Succeeded" ? undefined : latestWarning(events),
  ].filter((detail): detail is string => Boolean(detail));
  return details.length > 0 ? `${phase} — ${[...new Set(details)].join("; ")}` : phase;
}

function latestWarning(events: readonly CoreV1Event[]): string | undefined {
  const when = (event: CoreV1Event) =>
    new Date(String(event.lastTimestamp ?? event.eventTime ?? event.firstTimestamp ?? 0)).getTime();
  const latest = events
    .filter((event) => event.type === "Warning")
    .reduce<CoreV1Event | undefined>(
      (newest, event) => (!newest || when(event) >= when(newest) ? event : newest),
      undefined,
    );
  if (!latest) return undefined;
  const repeated = (latest.count ?? 1) > 1 ? ` (×${latest.count})` : "";
  return `${joined(latest.reason, latest.message)}${repeated}`;
}

function describeContainer(status: V1ContainerStatus): string | undefined {
  const { waiting, terminated } = status.state ?? {};
  if (waiting) return joined(waiting.reason, waiting.message);
  if (terminated && terminated.exitCode !== 0) {
    return `exit ${terminated.exitCode}${terminated.reason ? ` (${terminated.reason})` : ""}${
      terminated.message ? `: ${oneLine(terminated.message)}` : ""
    }`;
  }
  return undefined;
}

/** PodScheduled false (a pod pinned by nodeName skips the scheduler, but admission may still refuse it). */
function unscheduled(pod: V1Pod): string | undefined {
  const condition = pod.status?.conditions?.find(
    (candidate) => candidate.type === "PodScheduled" && candidate.status === "False",
  );
  return condition ? joined(condition.reason ?? "not scheduled", condition.message) : undefined;
}

function joined(reason: string | undefined, message: string | undefined): string | undefined {
  if (!reason && !message) return undefined;
  return [reason, message && oneLine(message)].filter(Boolean).join(": ");
}

/** Messages can carry the kubelet's multi-line output; a notice line keeps the first 300 characters. */
function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 300 ? `${flat.slice(0, 299)}…` : flat;
}
