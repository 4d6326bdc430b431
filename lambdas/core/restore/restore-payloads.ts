// The JSON the restore state machine (statemachine/restore.asl.json) passes its Lambda steps.
import * as z from "zod";

export const restoreInputSchema = z.object({
  /** The cluster to restore. */
  cluster: z.string().min(1),
  snapshotId: z.string().min(1),
  /** The cluster whose catalogue holds the snapshot, when it is not `cluster`; needs allowCrossCluster. */
  sourceCluster: z.string().optional(),
  allowCrossCluster: z.boolean().optional(),
  /** The live etcd's cluster id differs from the snapshot's because the cluster was restored since. */
  allowClusterIdChange: z.boolean().optional(),
  /**
   * etcd is down (the disaster case): go on when the safety snapshot, still tried first, cannot be taken.
   */
  skipSafetySnapshot: z.boolean().optional(),
  /** Restore with a tool that cannot bump the revision (etcd 3.4): Kubernetes watchers may miss changes. */
  allowWithoutRevisionBump: z.boolean().optional(),
});

export const restoreSnapshotSchema = z.object({
  sourceCluster: z.string(),
  snapshotId: z.string(),
  bucket: z.string(),
  key: z.string(),
  versionId: z.string().optional(),
  sha256: z.string(),
  bytes: z.number(),
  revision: z.number(),
  liveKeyCount: z.number(),
  /** The snapshot's HashKV at `revision` (catalogued from verification; absent on older rows). */
  kvHash: z.object({ hash: z.number(), compactRevision: z.number() }).optional(),
  etcdVersion: z.string().optional(),
  /** Added to every revision at restore (etcdutl --bump-revision), when the tool has it. */
  bumpRevision: z.number().optional(),
  /**
   * With allowWithoutRevisionBump: the bump is applied where the node's restore tool has the flags and
   * skipped where it has not, so the restored revision is either; without it, a tool lacking them fails
   * the prepare phase, before anything stops.
   */
  revisionBumpOptional: z.boolean().optional(),
});

export const restoreMemberSchema = z.object({
  name: z.string(),
  instanceId: z.string().optional(),
  dataDir: z.string(),
  manifestDir: z.string(),
  clientUrl: z.string(),
  peerUrl: z.string(),
});

const step = { input: restoreInputSchema, executionArn: z.string().min(1) };
export const validateRestoreInput = z.object(step);
export const requestApprovalInput = z.object({
  ...step,
  taskToken: z.string().min(1),
  summary: z.string(),
  approvalTimeoutSeconds: z.number(),
});
export const writeRestorePlansInput = z.object({
  ...step,
  snapshot: restoreSnapshotSchema,
  members: z.array(restoreMemberSchema),
});
export const restorePhaseInput = z.object({
  ...step,
  restoreId: z.string(),
  phase: z.string(),
  deadline: z.string().optional(),
});
export const agentLaunchSchema = z.object({
  member: z.string(),
  instanceId: z.string(),
  /** The shell lines Systems Manager (or the local executor) runs on the member's node; none for pods. */
  commands: z.array(z.string()),
  /** The pod executor's launch URLs, which StartAgentPods puts in the restore's Secret. */
  planUrl: z.string().optional(),
  statusUrl: z.string().optional(),
});
export type AgentLaunch = z.infer<typeof agentLaunchSchema>;
export const startAgentPodsInput = z.object({
  ...step,
  restoreId: z.string(),
  agents: z.array(agentLaunchSchema),
});
export const removeAgentPodsInput = z.object({
  ...step,
  restoreId: z.string(),
  /** Read each pod's state before removing it: on the failure paths, where the notice shows it. */
  describePods: z.boolean().default(false),
});
export const checkEtcdHealthInput = z.object({
  ...step,
  snapshot: restoreSnapshotSchema,
  members: z.array(restoreMemberSchema),
});
export const composeRestoreMessageInput = z.object({
  input: restoreInputSchema.partial().passthrough(),
  executionArn: z.string().min(1),
  outcome: z.enum(["succeeded", "failed"]),
  state: z.record(z.string(), z.unknown()),
  /** `$$.Execution.StartTime`: the notice's timings count from it. */
  executionStartedAt: z.string().optional(),
});

export type RestoreInput = z.infer<typeof restoreInputSchema>;
export type RestoreSnapshot = z.infer<typeof restoreSnapshotSchema>;
export type RestoreMember = z.infer<typeof restoreMemberSchema>;
