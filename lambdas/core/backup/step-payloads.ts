// The JSON each backup state passes its Lambda step (statemachine/backup.asl.json), as zod schemas:
// the handler checks its input with the same shape the state machine sends.
import * as z from "zod";
import { InvalidInputError } from "../errors.js";

const cluster = z.string().min(1);
const executionArn = z.string().min(1);

export const memberSchema = z.object({
  /** The member's client URL: reached directly, or as seen from inside its pod. */
  endpoint: z.string().url(),
  memberId: z.string(),
  revision: z.number(),
  /** How the snapshot is read; absent for direct access (gRPC to `endpoint`). */
  source: z.enum(["grpc", "exec"]).optional(),
  /** The member's pod, when the member was discovered through the Kubernetes API. */
  pod: z
    .object({
      namespace: z.string().min(1),
      name: z.string().min(1),
      container: z.string().min(1),
      nodeName: z.string().optional(),
    })
    .optional(),
});

/** How another member is reached: asked for its HashKV when the snapshot is verified. */
export const peerSchema = memberSchema.pick({ endpoint: true, source: true, pod: true });

export const resolvedTargetSchema = z.object({
  snapshotId: z.string(),
  member: memberSchema,
  /** The cluster's other members (absent from executions of an older definition). */
  peers: z.array(peerSchema).optional(),
});

export const storedSnapshotSchema = z.object({
  snapshotId: z.string(),
  bucket: z.string(),
  key: z.string(),
  versionId: z.string().optional(),
  bytes: z.number(),
  sha256: z.string(),
  revisionBefore: z.number(),
  revisionAfter: z.number().optional(),
  etcdVersion: z.string(),
  durationMs: z.number(),
});

/** The execution's own input, which every step receives as `input`. */
export const executionInputSchema = z.object({
  cluster,
  /** The schedule tick (EventBridge Scheduler's scheduled time): a second start for the same tick does nothing. */
  scheduledTime: z.string().optional(),
  /** A restore that holds the cluster's lease and asks for its safety snapshot under it. */
  leaseOwner: z.string().optional(),
  /** Catalogue tags for the snapshot, e.g. `pre-restore`. */
  tags: z.array(z.string()).optional(),
  /** Present on restore executions, which share the lease steps and hold the lease longer. */
  snapshotId: z.string().optional(),
});

const step = { input: executionInputSchema, executionArn };
export const leaseStepInput = z.object(step);
export const resolveTargetInput = z.object(step);
export const takeSnapshotInput = z.object({ ...step, target: resolvedTargetSchema });
export const verifySnapshotInput = z.object({
  ...step,
  snapshot: storedSnapshotSchema,
  /** The member, for the HashKV comparison; absent from executions of an older definition. */
  target: resolvedTargetSchema.optional(),
});
export const pruneSnapshotsInput = z.object(step);
export const markFailedInput = z.object({
  /** Lenient: the failure path must run whatever the input was, even one without a cluster. */
  input: executionInputSchema.partial().passthrough(),
  executionArn,
  /** The whole state at the Catch: the results of the states that succeeded, and `failure`. */
  state: z
    .object({
      lease: z.unknown().optional(),
      target: resolvedTargetSchema.partial().optional(),
      snapshot: z.object({ result: storedSnapshotSchema.partial() }).partial().optional(),
      verification: z.unknown().optional(),
      prune: z.unknown().optional(),
      release: z.unknown().optional(),
      failure: z.object({ Error: z.string().optional(), Cause: z.string().optional() }).optional(),
    })
    .passthrough(),
});

export type ExecutionInput = z.infer<typeof executionInputSchema>;
export type ResolvedTarget = z.infer<typeof resolvedTargetSchema>;
export type MemberReach = z.infer<typeof peerSchema>;

/** How a member is named in messages and on the catalogue row: its pod, or its endpoint. */
export function describeMemberReach(member: MemberReach): string {
  return member.pod
    ? `pod ${member.pod.namespace}/${member.pod.name} (${member.source ?? "grpc"})`
    : member.endpoint;
}
export type StoredSnapshotPayload = z.infer<typeof storedSnapshotSchema>;

/** Parses a step's input, naming every invalid field. */
export function parseStepInput<Schema extends z.ZodType>(
  schema: Schema,
  input: unknown,
  step: string,
): z.infer<Schema> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map(
    (issue) => `${issue.path.join(".") || "(input)"}: ${issue.message}`,
  );
  throw new InvalidInputError(`${step} got invalid input: ${problems.join("; ")}`);
}
