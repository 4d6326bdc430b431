// The barrier steps: write one plan per member (phase prepare), move every plan to the next phase, and
// read the agents' status objects. The agents see only their presigned URLs, which every plan write signs
// anew (agent-url-lifetimes.ts); the plans' source of truth is a JSON copy beside them that only the state
// machine reads.
import { createHash } from "node:crypto";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import * as z from "zod";
import { restoreLeaseSeconds } from "../backup/backup-dependencies.js";
import { apiServerReadyUrlOf, findTarget, type RestoreLayout } from "../config/target-config.js";
import { InvalidInputError, LeaseHeldError } from "../errors.js";
import { restoreRunPrefix } from "./agent-status-report.js";
import { defaultPhaseTimeoutSeconds, launchUrlSeconds, planUrlSeconds } from "./agent-url-lifetimes.js";
import { freeBytesNeeded } from "./member-free-space.js";
import type { RestoreDependencies } from "./restore-dependencies.js";
import type { AgentLaunch, RestoreInput, RestoreMember, RestoreSnapshot } from "./restore-payloads.js";
import {
  hasCompletedPhase,
  parseStatus,
  type RestoreAgentStatus,
  type RestorePhase,
  RestorePhases,
  type RestorePlan,
  renderPlan,
  restorePlanSchema,
} from "./restore-plan.js";
import { agentWaitSeconds } from "./restore-timeouts.js";
import { checkStoredObject } from "./stored-snapshot-object.js";

/** The JSON copy beside a plan: the plan, and the objects (snapshot, staged tool) whose URLs each plan write signs again. */
const storedPlanSchema = z
  .object({
    plan: restorePlanSchema,
    snapshot: z.object({ key: z.string().min(1), versionId: z.string().min(1).optional() }).strict(),
    /** The staged restore tool, whose URL is signed again with the snapshot's. */
    tool: z
      .object({ key: z.string().min(1), sha256: z.string() })
      .strict()
      .optional(),
  })
  .strict();
type StoredPlan = z.infer<typeof storedPlanSchema>;

type RestoreKeys = ReturnType<typeof restoreKeys>;

function restoreKeys(dependencies: RestoreDependencies, cluster: string, restoreId: string, member: string) {
  const base = `${restoreRunPrefix(dependencies.prefix, cluster, restoreId)}${member}`;
  return { plan: `${base}/plan.txt`, planJson: `${base}/plan.json`, status: `${base}/status.json` };
}

export function restoreIdFor(executionArn: string): string {
  const name = executionArn.split(":").pop() ?? "restore";
  return (
    name
      .replace(/[^A-Za-z0-9._-]/g, "-")
      .replace(/^[^A-Za-z0-9]+/, "")
      .slice(0, 80) || "restore"
  );
}

/** Where the agent parks a node's static-pod manifests: beside their directory, on the same mount. */
export function parkedManifestDirFor(manifestDir: string): string {
  return `${manifestDir.replace(/\/+$/, "")}.etcd-backup-parked`;
}

export async function writeRestorePlans(
  dependencies: RestoreDependencies,
  input: RestoreInput,
  executionArn: string,
  snapshot: RestoreSnapshot,
  members: RestoreMember[],
): Promise<{ restoreId: string; executor: RestoreLayout["executor"]; agents: AgentLaunch[] }> {
  const target = findTarget(await dependencies.loadTargets(), input.cluster);
  const layout = target.restore;
  if (!layout) throw new InvalidInputError(`target ${target.name} has no restore layout`);
  const restoreId = restoreIdFor(executionArn);
  // Again, now that the cluster's lease keeps every prune away: a snapshot a prune that began before the
  // validation's hold deleted is found here, while nothing has stopped, not by the agents' download.
  await checkStoredObject(dependencies, snapshot);
  const snapshotObject = {
    key: snapshot.key,
    ...(snapshot.versionId ? { versionId: snapshot.versionId } : {}),
  };
  const toolObject = layout.toolObject
    ? { key: stagedToolKey(dependencies.prefix, layout.toolObject.name), sha256: layout.toolObject.sha256 }
    : undefined;
  const launchSeconds = launchUrlSeconds(layout.phaseTimeoutSeconds);
  const initialCluster = members.map((member) => `${member.name}=${member.peerUrl}`).join(",");
  const agentScript =
    layout.executor === "pod"
      ? undefined
      : await stageAgentScript(dependencies, input.cluster, restoreId, launchSeconds);
  const agents: AgentLaunch[] = [];
  for (const member of members) {
    const configured = layout.members.find((entry) => entry.name === member.name);
    const apiServerReadyUrl = apiServerReadyUrlOf(layout, configured);
    // Unset: each agent reads the URL from its node's kube-apiserver manifest.
    const readiness =
      apiServerReadyUrl === "none"
        ? { checkApiReadiness: false }
        : apiServerReadyUrl
          ? { apiServerReadyUrl }
          : {};
    const healthUrl = configured?.healthUrl ?? layout.healthUrl;
    const keys = restoreKeys(dependencies, input.cluster, restoreId, member.name);
    const urls = await signAgentUrls(dependencies, keys, { snapshot: snapshotObject, tool: toolObject });
    const plan: RestorePlan = restorePlanSchema.parse({
      restoreId,
      cluster: input.cluster,
      phase: "prepare",
      snapshot: {
        url: urls.snapshot.url,
        sha256: snapshot.sha256,
        bytes: snapshot.bytes,
        revision: snapshot.revision,
      },
      ...urls.agent,
      member: {
        name: member.name,
        dataDir: member.dataDir,
        manifestDir: member.manifestDir,
        parkedManifestDir: parkedManifestDirFor(member.manifestDir),
        etcdManifest: layout.etcdManifest,
        apiServerManifest: layout.apiServerManifest,
        clientUrl: member.clientUrl,
        peerUrl: member.peerUrl,
        ...(healthUrl ? { healthUrl } : {}),
        ...readiness,
        ...(layout.apiServerCaFile ? { apiServerCaFile: layout.apiServerCaFile } : {}),
        restartManifests: layout.restartManifests,
      },
      initialCluster,
      initialClusterToken: `etcd-restore-${restoreId}`.slice(0, 100),
      ...agentWaitSeconds(layout),
      restoreTool: layout.restoreTool,
      ...(snapshot.bumpRevision
        ? {
            bumpRevision: snapshot.bumpRevision,
            markCompacted: true,
            ...(snapshot.revisionBumpOptional ? { revisionBumpOptional: true } : {}),
          }
        : {}),
      ...(layout.toolPath
        ? { [layout.restoreTool === "etcdutl" ? "etcdutlPath" : "etcdctlPath"]: layout.toolPath }
        : {}),
      ...urls.tool,
      minimumFreeBytes: freeBytesNeeded(snapshot.bytes),
    });
    await writeStoredPlan(dependencies, keys, {
      plan,
      snapshot: snapshotObject,
      ...(toolObject ? { tool: toolObject } : {}),
    });
    const planUrl = await dependencies.presign({
      key: keys.plan,
      method: "GET",
      expiresInSeconds: launchSeconds,
    });
    const statusUrl = await dependencies.presign({
      key: keys.status,
      method: "PUT",
      expiresInSeconds: launchSeconds,
    });
    agents.push({
      member: member.name,
      instanceId: member.instanceId ?? member.name,
      // Pods get their URLs through the restore's Secret; the other executors run these lines.
      ...(agentScript
        ? { commands: agentCommands(agentScript, restoreId, member.name, planUrl, statusUrl) }
        : { commands: [], planUrl, statusUrl }),
    });
  }
  dependencies.reporter.info("restore plans written", { restoreId, members: members.length });
  return { restoreId, executor: layout.executor, agents };
}

/** Where a target's staged restore tool lives: a prefix of its own, which only the agents' URLs may read. */
export function stagedToolKey(prefix: string, name: string): string {
  return `${prefix}/_tools/${name}`;
}

/**
 * Signs the URLs a plan hands the agent: the snapshot's (and the staged tool's), and the plan and status
 * URLs it uses next.
 */
async function signAgentUrls(
  dependencies: RestoreDependencies,
  keys: RestoreKeys,
  objects: Pick<StoredPlan, "snapshot" | "tool">,
): Promise<{
  snapshot: { url: string };
  agent: { planUrl: string; statusUrl: string };
  tool: { tool?: { url: string; sha256: string } };
}> {
  const sign = (key: string, method: "GET" | "PUT", versionId?: string) =>
    dependencies.presign({
      key,
      method,
      expiresInSeconds: planUrlSeconds,
      ...(versionId ? { versionId } : {}),
    });
  const { snapshot, tool } = objects;
  return {
    snapshot: { url: await sign(snapshot.key, "GET", snapshot.versionId) },
    agent: { planUrl: await sign(keys.plan, "GET"), statusUrl: await sign(keys.status, "PUT") },
    tool: tool ? { tool: { url: await sign(tool.key, "GET"), sha256: tool.sha256 } } : {},
  };
}

async function writeStoredPlan(
  dependencies: RestoreDependencies,
  keys: RestoreKeys,
  stored: StoredPlan,
): Promise<void> {
  await putText(dependencies, keys.planJson, JSON.stringify(stored));
  await putText(dependencies, keys.plan, renderPlan(stored.plan));
}

/**
 * The agent script, put once in the restore's working area for the nodes to fetch: inlined in every
 * member's command, five members' copies would pass Step Functions' 256 KiB limit on a state's data.
 */
async function stageAgentScript(
  dependencies: RestoreDependencies,
  cluster: string,
  restoreId: string,
  expiresInSeconds: number,
): Promise<{ url: string; sha256: string }> {
  const script = await dependencies.loadAgentScript();
  const key = `${restoreRunPrefix(dependencies.prefix, cluster, restoreId)}agent.sh`;
  await putText(dependencies, key, script);
  const url = await dependencies.presign({ key, method: "GET", expiresInSeconds });
  return { url, sha256: createHash("sha256").update(script).digest("hex") };
}

/**
 * Fetches the script onto the node, checks its sha256 and runs it; the URLs are arguments, never echoed by
 * the agent, and reach curl on its standard input, not its command line. POSIX sh: Systems Manager's
 * AWS-RunShellScript runs the lines with sh. The file is named after the member too: members sharing one
 * host (the local mode) would otherwise rewrite the script under an agent that bash is still reading.
 * Once checked, the file is opened and unlinked, and bash runs it from that descriptor: nothing is left on
 * the node however the agent ends, and `exec` keeps the agent the process that signals reach.
 */
function agentCommands(
  script: { url: string; sha256: string },
  restoreId: string,
  member: string,
  planUrl: string,
  statusUrl: string,
): string[] {
  const path = `/var/tmp/etcd-restore-agent-${restoreId}-${member.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 100)}.sh`;
  const quote = (value: string) => `'${value.replace(/'/g, `'"'"'`)}'`;
  return [
    "set -e",
    `printf 'url = "%s"\\n' ${quote(script.url)} | curl -K - --fail --silent --show-error --retry 3 --output ${path}`,
    `echo '${script.sha256}  ${path}' | sha256sum --check --quiet`,
    `chmod 700 ${path}`,
    `exec 9<${path}`,
    `rm -f ${path}`,
    `exec bash /dev/fd/9 ${quote(planUrl)} ${quote(statusUrl)}`,
  ];
}

export async function setRestorePhase(
  dependencies: RestoreDependencies,
  input: RestoreInput,
  executionArn: string,
  restoreId: string,
  phase: string,
): Promise<{ phase: RestorePhase; deadline: string; startedAt: string }> {
  if (!(RestorePhases as readonly string[]).includes(phase))
    throw new InvalidInputError(`unknown restore phase "${phase}"`);
  await renewRestoreLease(dependencies, input, executionArn, phase);
  const target = findTarget(await dependencies.loadTargets(), input.cluster);
  const members = target.restore?.members ?? [];
  for (const member of members) {
    const keys = restoreKeys(dependencies, input.cluster, restoreId, member.name);
    const stored = storedPlanSchema.parse(JSON.parse(await getText(dependencies, keys.planJson)));
    const urls = await signAgentUrls(dependencies, keys, stored);
    const plan: RestorePlan = {
      ...stored.plan,
      phase: phase as RestorePhase,
      snapshot: { ...stored.plan.snapshot, ...urls.snapshot },
      ...urls.agent,
      ...urls.tool,
    };
    await writeStoredPlan(dependencies, keys, { ...stored, plan });
  }
  const timeout = (target.restore?.phaseTimeoutSeconds ?? defaultPhaseTimeoutSeconds) * 1000;
  dependencies.reporter.info("restore phase set", { restoreId, phase });
  // Every agent can read the phase from now on: its deadline, and the notice's timings, count from here.
  const startedAt = dependencies.now();
  return {
    phase: phase as RestorePhase,
    deadline: new Date(startedAt.getTime() + timeout).toISOString(),
    startedAt: startedAt.toISOString(),
  };
}

/**
 * The lease taken at approval lasts restoreLeaseSeconds; phases that each use up to their timeout could
 * outlast it, and a scheduled backup would then start in the middle of the restore. Every phase write
 * extends it by as much again. A lease that is no longer ours is reported, never a reason to stop: the
 * phase being written may be the rollback.
 */
async function renewRestoreLease(
  dependencies: RestoreDependencies,
  input: RestoreInput,
  executionArn: string,
  phase: string,
): Promise<void> {
  try {
    await dependencies.leases.renewLease({
      cluster: input.cluster,
      owner: executionArn,
      ttlSeconds: restoreLeaseSeconds,
      now: dependencies.now(),
    });
  } catch (error) {
    if (!(error instanceof LeaseHeldError)) throw error;
    dependencies.reporter.warn("the restore no longer holds the cluster's lease; going on with the phase", {
      phase,
      reason: error.message,
    });
  }
}

export async function checkRestoreAgents(
  dependencies: RestoreDependencies,
  input: RestoreInput,
  restoreId: string,
  phase: string,
  deadline: string | undefined,
): Promise<{
  state: "working" | "done" | "failed";
  summary: string;
  statuses: Array<Pick<RestoreAgentStatus, "member" | "phase" | "state" | "message">>;
}> {
  const target = findTarget(await dependencies.loadTargets(), input.cluster);
  const members = target.restore?.members ?? [];
  const statuses: Array<Pick<RestoreAgentStatus, "member" | "phase" | "state" | "message">> = [];
  const readinessNotChecked: string[] = [];
  for (const member of members) {
    const keys = restoreKeys(dependencies, input.cluster, restoreId, member.name);
    const text = await getText(dependencies, keys.status).catch(() => undefined);
    // A status being written can be read half-way (s3rver writes in place): unreadable counts as working.
    const status = text ? safely(() => parseStatus(text)) : undefined;
    // A status of another restore (an earlier run) says nothing. During the rollback, a failure reported in
    // an earlier phase is the one being answered: its agent stays for the rollback and has yet to read it.
    const state =
      !status || status.restoreId !== restoreId
        ? "working"
        : hasCompletedPhase(status, restoreId, phase as RestorePhase)
          ? "done"
          : status.state === "failed" && (phase !== "rollback" || status.phase === "rollback")
            ? "failed"
            : "working";
    if (status?.restoreId === restoreId && status.apiReadiness === "not checked") {
      readinessNotChecked.push(member.name);
    }
    statuses.push({
      member: member.name,
      phase: status?.phase ?? "none",
      state,
      message: status?.message ?? "no status yet",
    });
  }
  const failed = statuses.filter((status) => status.state === "failed");
  // Said first, so that a success notice never reads as if the API had been seen ready everywhere.
  const summary = [
    ...(readinessNotChecked.length > 0
      ? [`API readiness not checked on ${readinessNotChecked.join(", ")} (the member's message says why)`]
      : []),
    ...statuses.map((status) => `${status.member}: ${status.phase} ${status.state} — ${status.message}`),
  ].join("; ");
  if (failed.length > 0) return { state: "failed", summary, statuses };
  if (statuses.every((status) => status.state === "done")) return { state: "done", summary, statuses };
  if (deadline && dependencies.now().getTime() > Date.parse(deadline)) {
    return {
      state: "failed",
      summary: `phase ${phase} passed its deadline ${deadline}: ${summary}`,
      statuses,
    };
  }
  return { state: "working", summary, statuses };
}

function safely<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

async function putText(dependencies: RestoreDependencies, key: string, body: string): Promise<void> {
  await dependencies.s3.send(
    new PutObjectCommand({
      Bucket: dependencies.bucket,
      Key: key,
      Body: body,
      ContentType: "text/plain",
      ...(dependencies.kmsKeyId
        ? { ServerSideEncryption: "aws:kms", SSEKMSKeyId: dependencies.kmsKeyId }
        : {}),
    }),
  );
}

async function getText(dependencies: RestoreDependencies, key: string): Promise<string> {
  const reply = await dependencies.s3.send(new GetObjectCommand({ Bucket: dependencies.bucket, Key: key }));
  return (await reply.Body?.transformToString("utf8")) ?? "";
}
