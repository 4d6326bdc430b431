// The ssm executor's free-space probe, before approval: one Run Command (AWS-RunShellScript) to every
// member's instance prints the free space of each data dir's filesystem, read back with
// GetCommandInvocation. Bounded as a whole (an offline node, an SSM API out of the functions' reach): what
// has not answered by then is reported unmeasured, and the agents check again before anything stops.
import { setTimeout as sleep } from "node:timers/promises";
import {
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
  SendCommandCommand,
  type SSMClient,
} from "@aws-sdk/client-ssm";
import { freeSpaceProbeSeconds, type MemberDataDir, type MemberFreeSpace } from "./member-free-space.js";

/** The document the probe runs: the one the agents run with (infra grants only it). */
export const freeSpaceDocumentName = "AWS-RunShellScript";

export interface SsmFreeSpaceOptions {
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
  { timeoutMs = freeSpaceProbeSeconds * 1000, pollMs = 1000 }: SsmFreeSpaceOptions = {},
): Promise<MemberFreeSpace[]> {
  const deadline = Date.now() + timeoutMs;
  // The SDK has no overall bound of its own: a function in a VPC without a route to SSM would wait for
  // TCP's, past its own timeout.
  const abortSignal = AbortSignal.timeout(timeoutMs);
  const dataDirs = [...new Set(members.map((member) => member.dataDir))];
  const instanceIds = [
    ...new Set(members.flatMap((member) => (member.instanceId ? [member.instanceId] : []))),
  ];
  if (instanceIds.length === 0) throw new Error("no member names its instance");
  const sent = await client
    .send(
      new SendCommandCommand({
        DocumentName: freeSpaceDocumentName,
        InstanceIds: instanceIds,
        // A node that has not started it by then never runs it (SSM's minimum).
        TimeoutSeconds: 30,
        Parameters: { commands: freeSpaceCommands(dataDirs), executionTimeout: ["20"] },
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

/**
 * The probe's shell lines (sh): `free <index> <KiB available>` for each data dir, measured as the agent
 * measures it (df -Pk, POSIX) on the data dir, or on its parent while it does not exist.
 */
export function freeSpaceCommands(dataDirs: string[]): string[] {
  const quote = (value: string) => `'${value.replace(/'/g, `'"'"'`)}'`;
  return [
    `probe() { d=$2; [ -e "$d" ] || d=$(dirname -- "$d"); printf 'free %s %s\\n' "$1" "$(df -Pk -- "$d" | awk 'NR == 2 { print $4 }')"; }`,
    ...dataDirs.map((dataDir, index) => `probe ${index} ${quote(dataDir)}`),
  ];
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
