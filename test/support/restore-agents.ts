// Plays the restore state machine's side of the agent contract in tests: writes one plan object per member
// to s3rver, starts one agent process per member with presigned plan and status URLs (the same script a
// control-plane node runs), moves the plans from phase to phase, renewing the agents' URLs in each plan
// as the state machine does, and waits on the status objects.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import {
  parseStatus,
  type RestoreAgentStatus,
  type RestorePhase,
  type RestorePlan,
  renderPlan,
} from "../../lambdas/core/restore/restore-plan.js";
import { presignWithClient } from "../../lambdas/core/store/presign.js";
import type { LocalS3 } from "./s3-server.js";

export const restoreAgentScript = join(
  import.meta.dirname,
  "../../lambdas/core/restore/agent/etcd-restore-agent.sh",
);

export interface AgentProcess {
  member: string;
  child: ChildProcess;
  /** Everything the agent wrote to stderr (its log). */
  stderr: () => string;
  exitCode: Promise<number | null>;
  /** The URLs the agent was started with. */
  planUrl: string;
  statusUrl: string;
}

export interface PhaseOutcome {
  statuses: RestoreAgentStatus[];
  failed: boolean;
}

export interface RestoreAgents {
  agents: AgentProcess[];
  /** Every URL signed for the agents so far: launch URLs and the ones renewed in plans. */
  signedUrls: string[];
  /**
   * Rewrites every member's plan with `phase` (and any changes), as the state machine does at a barrier,
   * with newly signed plan and status URLs.
   */
  writePhase(phase: RestorePhase, change?: (plan: RestorePlan) => RestorePlan): Promise<void>;
  /** Waits until every agent reports `phase` done, or one reports failed or exits first. */
  waitForPhase(phase: RestorePhase, timeoutMs?: number): Promise<PhaseOutcome>;
  /** Writes the phase and waits for it. */
  advance(phase: RestorePhase, timeoutMs?: number): Promise<PhaseOutcome>;
  /** Reads the member's status, from the object later plans name (or the one called `statusName`). */
  readStatus(
    member: string,
    statusName?: string,
  ): Promise<{ text: string; status: RestoreAgentStatus } | undefined>;
  /** Later plans name a status object called `statusName` (waitForPhase and readStatus follow it). */
  moveStatus(statusName: string): Promise<void>;
  /** Kills agents still running. */
  stop(): Promise<void>;
}

export interface StartRestoreAgentsOptions {
  s3: LocalS3;
  /** One per member; their phase is replaced by `initialPhase`. */
  plans: RestorePlan[];
  initialPhase: RestorePhase;
  pollSeconds?: string;
  /** More environment for the agents, e.g. ETCD_RESTORE_AGENT_RESTART_GRACE_SECONDS. */
  env?: Record<string, string>;
  /** How long the URLs the agents are started with live (3600). */
  launchUrlSeconds?: number;
  /** Whether each plan names renewed plan and status URLs, as the state machine's do (true). */
  renewUrls?: boolean;
}

const keyPrefix = "restore-agents";

export async function startRestoreAgents(options: StartRestoreAgentsOptions): Promise<RestoreAgents> {
  const { s3 } = options;
  let plans = options.plans.map((plan) => ({ ...plan, phase: options.initialPhase }));
  const planKey = (plan: RestorePlan) => `${keyPrefix}/${plan.restoreId}/${plan.member.name}/plan`;
  let currentStatusName = "status.json";
  const statusKey = (member: string, statusName = currentStatusName) =>
    `${keyPrefix}/${plans[0]?.restoreId}/${member}/${statusName}`;
  const signedUrls: string[] = [];
  const presign = async (key: string, method: "GET" | "PUT", expiresInSeconds = 3600) => {
    const url = await presignWithClient(s3.client, {
      bucket: s3.bucket,
      key,
      method,
      expiresInSeconds,
      endpoint: s3.endpoint,
    });
    signedUrls.push(url);
    return url;
  };

  const writePlans = async () => {
    for (const plan of plans) {
      const renewed =
        options.renewUrls === false
          ? plan
          : {
              ...plan,
              planUrl: await presign(planKey(plan), "GET"),
              statusUrl: await presign(statusKey(plan.member.name), "PUT"),
            };
      await s3.client.send(
        new PutObjectCommand({
          Bucket: s3.bucket,
          Key: planKey(plan),
          Body: renderPlan(renewed),
          ContentType: "text/plain",
        }),
      );
    }
  };
  // Statuses left by an earlier run of agents would answer for these ones.
  const deleteStatuses = async () => {
    for (const plan of plans) {
      await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: statusKey(plan.member.name) }));
    }
  };
  await writePlans();
  await deleteStatuses();

  const agents: AgentProcess[] = [];
  for (const plan of plans) {
    const planUrl = await presign(planKey(plan), "GET", options.launchUrlSeconds);
    const statusUrl = await presign(statusKey(plan.member.name), "PUT", options.launchUrlSeconds);
    const child = spawn("bash", [restoreAgentScript, planUrl, statusUrl], {
      env: {
        ...process.env,
        ETCD_RESTORE_AGENT_POLL_SECONDS: options.pollSeconds ?? "0.2",
        ETCD_RESTORE_AGENT_PLAN_WAIT_SECONDS: "20",
        ...options.env,
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8");
    });
    const exitCode = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    agents.push({ member: plan.member.name, child, stderr: () => stderr, exitCode, planUrl, statusUrl });
  }

  // s3rver writes an object in place, so a read can see half of a PUT or be cut off by it (S3 itself
  // never shows either): such a read is tried again.
  const readStatusAt = async (
    key: string,
    attempts = 5,
  ): Promise<{ text: string; status: RestoreAgentStatus } | undefined> => {
    try {
      const reply = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
      const text = (await reply.Body?.transformToString("utf8")) ?? "";
      return { text, status: parseStatus(text) };
    } catch (error) {
      if ((error as { name?: string }).name === "NoSuchKey") return undefined;
      if (attempts <= 1) throw error;
      await sleep(50);
      return readStatusAt(key, attempts - 1);
    }
  };
  const readStatus = (member: string, statusName?: string) => readStatusAt(statusKey(member, statusName));

  const waitForPhase = async (phase: RestorePhase, timeoutMs = 60_000): Promise<PhaseOutcome> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const statuses = (await Promise.all(agents.map((agent) => readStatus(agent.member))))
        .filter((entry) => entry !== undefined)
        .map((entry) => entry.status);
      const current = statuses.filter((status) => status.phase === phase);
      // A status left by an earlier agent run names an earlier phase; only this phase's failure counts.
      if (current.some((status) => status.state === "failed")) return { statuses, failed: true };
      if (current.length === agents.length && current.every((status) => status.state === "done")) {
        return { statuses, failed: false };
      }
      // An agent ends after the last phase it can be given (rollback, finish, abort) once it reported it
      // done; one that ended otherwise failed, or was killed.
      const exited = agents.filter((agent) => agent.child.exitCode !== null);
      if (exited.length > 0) {
        // Give an ending agent's last status PUT a moment, then judge on what is there.
        await sleep(300);
        const last = (await Promise.all(agents.map((agent) => readStatus(agent.member))))
          .filter((entry) => entry !== undefined)
          .map((entry) => entry.status);
        const done = new Set(
          last
            .filter((status) => status.phase === phase && status.state === "done")
            .map((status) => status.member),
        );
        if (exited.some((agent) => !done.has(agent.member))) return { statuses: last, failed: true };
        if (done.size === agents.length) return { statuses: last, failed: false };
      }
      if (Date.now() > deadline) {
        throw new Error(
          `agents did not finish ${phase} within ${timeoutMs} ms: ${JSON.stringify(statuses)}\n${agents
            .map((agent) => `--- ${agent.member}\n${agent.stderr()}`)
            .join("\n")}`,
        );
      }
      await sleep(200);
    }
  };

  const writePhase = async (phase: RestorePhase, change?: (plan: RestorePlan) => RestorePlan) => {
    plans = plans.map((plan) => ({ ...(change ? change(plan) : plan), phase }));
    await writePlans();
  };

  return {
    agents,
    signedUrls,
    writePhase,
    waitForPhase,
    async advance(phase, timeoutMs) {
      await writePhase(phase);
      return waitForPhase(phase, timeoutMs);
    },
    readStatus,
    async moveStatus(statusName) {
      currentStatusName = statusName;
      await deleteStatuses();
    },
    async stop() {
      for (const agent of agents) if (agent.child.exitCode === null) agent.child.kill("SIGKILL");
      await Promise.all(agents.map((agent) => agent.exitCode));
    },
  };
}
