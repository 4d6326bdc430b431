// The ssm executor's free-space probe, before approval: one Run Command (the stack's free-space document,
// free-space-document.ts) to every member's instance prints the free space of each data dir's filesystem, read back with
// GetCommandInvocation. Bounded as a whole (an offline node, an SSM API out of the functions' reach): what
// has not answered by then is reported unmeasured, and the agents check again before anything stops.
import { setTimeout as sleep } from "node:timers/promises";
import {
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
  SendCommandCommand,
  type SSMClient,
} from "@aws-sdk/client-ssm";
import { isProbePath } from "./free-space-document.js";
import { freeSpaceProbeSeconds, type MemberDataDir, type MemberFreeSpace } from "./member-free-space.js";

export interface SsmFreeSpaceOptions {
  /** The name of the stack's free-space document. */
  documentName: string;
  /** The whole probe's bound, SendCommand included (freeSpaceProbeSeconds). */
  timeoutMs?: number;
  /** Between rounds of GetCommandInvocation. */
  pollMs?: number;
}

/** A command that is not done yet; every other status is final (Success, Failed, TimedOut, Cancelled). */
const pendingStatuses = new Set(["Pending", "InProgress", "Delayed", "Cancelling"]);

export async function measureFreeSpaceThroughSsm(
  client: SSMClient,
  members: MemberDataDir[],
  { documentName, timeoutMs = freeSpaceProbeSeconds * 1000, pollMs = 1000 }: SsmFreeSpaceOptions,
): Promise<MemberFreeSpace[]> {
  const deadline = Date.now() + timeoutMs;
  // The SDK has no overall bound of its own: a function in a VPC without a route to SSM would wait for
  // TCP's, past its own timeout.
  const abortSignal = AbortSignal.timeout(timeoutMs);
  // The document takes only plain paths: a member whose data dir is not one is left to its agent.
  const probed = members.filter((member) => member.instanceId && isProbePath(member.dataDir));
  if (probed.length === 0) {
    throw new Error(
      members.some((member) => !member.instanceId)
        ? "no member names its instance"
        : "no data dir is a path the probe takes (letters, digits and ._/- only)",
    );
  }
  const dataDirs = [...new Set(probed.map((member) => member.dataDir))];
  const instanceIds = [...new Set(probed.map((member) => member.instanceId as string))];
  const sent = await client
    .send(
      new SendCommandCommand({
        DocumentName: documentName,
        InstanceIds: instanceIds,
        // A node that has not started it by then never runs it (SSM's minimum).
        TimeoutSeconds: 30,
        Parameters: { dataDirs: [dataDirs.join(" ")] },
        Comment: "etcd-backup restore: free space of the etcd data dirs, before approval",
      }),
      { abortSignal },
    )
    .catch((error: unknown) => {
      if (abortSignal.aborted) {
        throw new Error(`Systems Manager did not take the command within ${Math.round(timeoutMs / 1000)} s`);
      }
      throw error;
    });
  const commandId = sent.Command?.CommandId;
  if (!commandId) throw new Error("SendCommand returned no command id");

  const done = new Map<string, GetCommandInvocationCommandOutput>();
  for (;;) {
    for (const instanceId of instanceIds.filter((id) => !done.has(id))) {
      try {
        const invocation = await client.send(
          new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }),
          { abortSignal },
        );
        if (!pendingStatuses.has(invocation.Status ?? "Pending")) done.set(instanceId, invocation);
      } catch (error) {
        // Run Command is eventually consistent: an invocation may not be visible at once.
        if ((error as Error).name === "InvocationDoesNotExist") continue;
        if (abortSignal.aborted) break;
        throw error;
      }
    }
    if (done.size === instanceIds.length || Date.now() + pollMs >= deadline) break;
    await sleep(pollMs);
  }

  return members.map((member): MemberFreeSpace => {
    if (!isProbePath(member.dataDir)) {
      return {
        member: member.name,
        unmeasured: `the probe takes only paths of letters, digits and ._/-, not ${member.dataDir}`,
      };
    }
    const invocation = member.instanceId ? done.get(member.instanceId) : undefined;
    if (!invocation) {
      return {
        member: member.name,
        unmeasured: member.instanceId
          ? `no answer from ${member.instanceId} within ${Math.round(timeoutMs / 1000)} s`
          : "no instance",
      };
    }
    const kib = parseFreeSpace(invocation.StandardOutputContent ?? "").get(dataDirs.indexOf(member.dataDir));
    if (invocation.Status === "Success" && kib !== undefined)
      return { member: member.name, freeBytes: kib * 1024 };
    const stderr = firstLine(invocation.StandardErrorContent);
    if (invocation.Status === "Success") {
      return {
        member: member.name,
        unmeasured: `df on ${member.instanceId} gave no figure for ${member.dataDir}${stderr ? `: ${stderr}` : ""}`,
      };
    }
    return {
      member: member.name,
      unmeasured: `the command on ${member.instanceId} ended ${invocation.Status}: ${stderr ?? invocation.StatusDetails ?? invocation.Status}`,
    };
  });
}

/** KiB available by data dir index, from the probe's output. */
export function parseFreeSpace(output: string): Map<number, number> {
  const found = new Map<number, number>();
  for (const match of output.matchAll(/^free (\d+) (\d+)$/gm)) found.set(Number(match[1]), Number(match[2]));
  return found;
}

function firstLine(text: string | undefined): string | undefined {
  return text?.trim().split("\n")[0] || undefined;
}
