// The targets file: one entry per etcd cluster to back up, read by the CDK app (to create schedules,
// grants and alarms) and by the CLI and handlers (to reach the cluster). Validated once, with messages
// that name the field.
import { z } from "zod";
import { InvalidInputError } from "../errors.js";

const clusterName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "1-63 lowercase letters, digits and '-'");

const retentionSchema = z
  .object({
    hourly: z.number().int().min(0).default(24),
    daily: z.number().int().min(0).default(7),
    weekly: z.number().int().min(0).default(4),
    monthly: z.number().int().min(0).default(12),
    /** FAILED rows and their leftovers are removed after this many hours. */
    failedGraceHours: z.number().int().min(1).default(48),
    /** Safety snapshots taken before a restore are kept this many days. */
    preRestoreDays: z.number().int().min(1).default(90),
  })
  .strict();

const accessSchema = z.discriminatedUnion("kind", [
  z
    .object({
      kind: z.literal("eks"),
      clusterName: z.string().min(1),
      region: z.string().min(1),
      roleArn: z.string().startsWith("arn:").optional(),
    })
    .strict(),
  z
    .object({
      kind: z.literal("kubeconfig"),
      secretArn: z.string().startsWith("arn:"),
      context: z.string().optional(),
    })
    .strict(),
  z.object({ kind: z.literal("direct") }).strict(),
]);

const etcdSchema = z
  .object({
    source: z.enum(["grpc", "exec"]).default("grpc"),
    /** Client URLs reached directly (access kind "direct"); otherwise members are discovered as pods. */
    endpoints: z.array(z.string().url()).optional(),
    namespace: z.string().default("kube-system"),
    selector: z.string().default("component=etcd"),
    container: z.string().default("etcd"),
    /** Secrets Manager secret with `ca`, `cert`, `key` (PEM) for gRPC over mutual TLS. */
    tlsSecretArn: z.string().startsWith("arn:").optional(),
    /** Paths inside the etcd pod, for the exec source. */
    podTls: z
      .object({
        cacert: z.string().default("/etc/kubernetes/pki/etcd/ca.crt"),
        cert: z.string().default("/etc/kubernetes/pki/etcd/server.crt"),
        key: z.string().default("/etc/kubernetes/pki/etcd/server.key"),
      })
      .strict()
      .optional(),
  })
  .strict();

export const targetSchema = z
  .object({
    name: clusterName,
    /** An EventBridge Scheduler expression: rate(1 hour), cron(0 * * * ? *). */
    schedule: z.string().regex(/^(rate|cron)\(.+\)$/, "an EventBridge expression such as rate(1 hour)"),
    retention: retentionSchema.default(() => retentionSchema.parse({})),
    access: accessSchema.default({ kind: "direct" }),
    etcd: etcdSchema.default(() => etcdSchema.parse({})),
  })
  .strict();

export const targetsFileSchema = z
  .object({
    /** Key prefix of every snapshot object. */
    prefix: z.string().default("etcd-backup"),
    targets: z.array(targetSchema).min(1),
  })
  .strict()
  .superRefine((file, context) => {
    const seen = new Set<string>();
    file.targets.forEach((target, index) => {
      if (seen.has(target.name)) {
        context.addIssue({
          code: "custom",
          path: ["targets", index, "name"],
          message: `duplicate target "${target.name}"`,
        });
      }
      seen.add(target.name);
    });
  });

export type Target = z.infer<typeof targetSchema>;
export type TargetsFile = z.infer<typeof targetsFileSchema>;
export type RetentionPolicy = Target["retention"];

/** Parses a targets file's content (JSON), naming every invalid field in one message. */
export function parseTargetsFile(content: unknown, origin = "targets file"): TargetsFile {
  const parsed = targetsFileSchema.safeParse(content);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map(
    (issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`,
  );
  throw new InvalidInputError(`${origin} is invalid: ${problems.join("; ")}`);
}

export function findTarget(file: TargetsFile, name: string): Target {
  const target = file.targets.find((candidate) => candidate.name === name);
  if (!target) {
    throw new InvalidInputError(
      `no target named "${name}" (known: ${file.targets.map((t) => t.name).join(", ")})`,
    );
  }
  return target;
}
