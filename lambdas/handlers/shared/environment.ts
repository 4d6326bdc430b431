// The Lambda environment, read and checked once per cold start; a missing variable names itself.
import * as z from "zod";

const environmentSchema = z
  .object({
    CATALOGUE_TABLE: z.string().min(1),
    SNAPSHOT_BUCKET: z.string().min(1),
    SNAPSHOT_PREFIX: z.string().default("etcd-backup"),
    SNAPSHOT_KMS_KEY_ID: z.string().optional(),
    /** The SSM parameter holding the targets file (deployed stacks). */
    TARGETS_PARAMETER_NAME: z.string().optional(),
    /** A targets file on disk (local runs). */
    TARGETS_FILE: z.string().optional(),
    /** Local stand-ins (s3rver, dynalite); unset on AWS. */
    S3_ENDPOINT: z.string().url().optional(),
    DYNAMODB_ENDPOINT: z.string().url().optional(),
    STAGING_DIR: z.string().default("/tmp"),
    /** The restore approvers' SNS topic (restore functions only). */
    APPROVERS_TOPIC_ARN: z.string().optional(),
    /**
     * The role whose session signs the agents' presigned URLs (write-restore-plans on AWS); unset
     * locally, where the S3 client's own credentials sign.
     */
    PRESIGN_ROLE_ARN: z.string().startsWith("arn:").optional(),
    /** validate-restore: the stack's df-only SSM document for the free-space probe (ssm executor only). */
    FREE_SPACE_DOCUMENT: z.string().optional(),
    /** The node agent script bundled beside the restore functions. */
    RESTORE_AGENT_SCRIPT: z.string().optional(),
    /** What the `etcd-backup` commands quoted in notices add to reach this stack (`--local` locally). */
    OPERATOR_CLI_FLAGS: z.string().default(""),
    /** Local runs: SNS messages the handlers publish go to this file instead. */
    LOCAL_NOTIFICATIONS_FILE: z.string().optional(),
  })
  .refine((environment) => environment.TARGETS_PARAMETER_NAME || environment.TARGETS_FILE, {
    message: "set TARGETS_PARAMETER_NAME (or TARGETS_FILE for local runs)",
    path: ["TARGETS_PARAMETER_NAME"],
  });

export type HandlerEnvironment = z.infer<typeof environmentSchema>;

let cached: HandlerEnvironment | undefined;

export function readEnvironment(source: NodeJS.ProcessEnv = process.env): HandlerEnvironment {
  if (cached && source === process.env) return cached;
  const parsed = environmentSchema.safeParse(source);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    throw new Error(`invalid Lambda environment: ${problems.join("; ")}`);
  }
  if (source === process.env) cached = parsed.data;
  return parsed.data;
}
