// What the restore steps touch beyond the backup steps' dependencies.

import type { BackupDependencies } from "../backup/backup-dependencies.js";
import type { ApprovalTokens } from "../catalogue/approval-tokens.js";

export interface RestoreDependencies extends BackupDependencies {
  approvals: ApprovalTokens;
  /**
   * A presigned URL on the snapshot bucket that works for `expiresInSeconds`, signed by a session that
   * outlives it (at most an hour: agent-url-lifetimes.ts).
   */
  presign(request: {
    key: string;
    method: "GET" | "PUT";
    versionId?: string;
    expiresInSeconds: number;
  }): Promise<string>;
  /** The node agent's script, sent to each node with its command. */
  loadAgentScript(): Promise<string>;
  /**
   * What the `etcd-backup` commands quoted in notices add to reach this stack, with a leading space:
   * `--stack`/`--region` when deployed, `--local` against the local stack.
   */
  operatorCliFlags: string;
  /** Publishes to the approvers' topic. */
  notifyApprovers(subject: string, message: string): Promise<void>;
}
