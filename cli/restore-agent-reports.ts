// A running restore's agents, as `etcd-backup status` shows them: each member's last report (phase, state,
// message — a download's progress included), read from the agents' status objects in the snapshot bucket,
// not from the execution's history, which a restore operator may not read (it holds presigned URLs).
import type { S3Client } from "@aws-sdk/client-s3";
import { describeError } from "../lambdas/core/errors.js";
import { type AgentReport, readAgentReports } from "../lambdas/core/restore/agent-status-report.js";
import { restoreIdFor } from "../lambdas/core/restore/restore-plans-step.js";
import type { ExecutionStatus } from "./execution-status.js";

/** Where the restores keep their agents' statuses, and a client that may read them. */
export interface AgentReportSource {
  bucket: string;
  prefix: string;
  s3: S3Client;
}

/** The status, with its agents' reports when it is a running restore; a failed read is said, not thrown. */
export async function withAgentReports(
  status: ExecutionStatus,
  source: () => Promise<AgentReportSource>,
): Promise<ExecutionStatus> {
  const input = status.input as { cluster?: unknown; snapshotId?: unknown } | undefined;
  if (status.status !== "RUNNING" || typeof input?.cluster !== "string" || input.snapshotId === undefined) {
    return status;
  }
  try {
    const { s3, bucket, prefix } = await source();
    const agents = await readAgentReports(s3, {
      bucket,
      prefix,
      cluster: input.cluster,
      restoreId: restoreIdFor(status.executionArn),
    });
    return { ...status, agents };
  } catch (error) {
    return { ...status, agentsUnavailable: describeError(error) };
  }
}

/** An agent's report as one line, for the terminal. */
export function agentReportLine(agent: AgentReport): string {
  return `${agent.member}: ${agent.phase} ${agent.state} — ${agent.message}`;
}

/** For a followed execution: prints each agent's report to stderr when it changes. */
export function agentReportPrinter(): (status: ExecutionStatus) => void {
  const shown = new Map<string, string>();
  return (status) => {
    for (const agent of status.agents ?? []) {
      const line = agentReportLine(agent);
      if (shown.get(agent.member) === line) continue;
      shown.set(agent.member, line);
      process.stderr.write(`  ${line}\n`);
    }
  };
}
