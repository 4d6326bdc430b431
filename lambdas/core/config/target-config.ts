// The targets file: one entry per etcd cluster to back up, read by the CDK app (to create schedules,
// grants and alarms) and by the CLI and handlers (to reach the cluster). Validated once, with messages
// that name the field.
import * as z from "zod";
import { InvalidInputError } from "../errors.js";
import { MemberPresets, presetMemberSelector } from "../kube/member-presets.js";
import { defaultPhaseTimeoutSeconds, maxPhaseTimeoutSeconds } from "../restore/agent-url-lifetimes.js";
import { checkRestartManifests, fileName, sha256Hex } from "../restore/restore-plan.js";
import {
  agentStartWaitSeconds,
  agentStopWaitSeconds,
  maxApprovalTimeoutSeconds,
} from "../restore/restore-timeouts.js";
import { MemberHashCheckModes } from "../snapshot/member-hash-check.js";
import { longestScheduleGapSeconds } from "./schedule-interval.js";

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
    /** Snapshots taken on demand (tagged: `backup --tag`, `on-demand`) are kept this many days. */
    onDemandDays: z.number().int().min(1).default(30),
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
    /**
     * Who runs the etcd pods, for the discovery defaults (member-presets.ts): kubeadm's static pods, or
     * the Bitnami chart's StatefulSet (with its release's namespace, and the exec source by default).
     */
    preset: z.enum(MemberPresets).default("kubeadm"),
    /** The Bitnami chart's release name, narrowing the selector to it. */
    release: z.string().min(1).optional(),
    source: z.enum(["grpc", "exec"]).optional(),
    /** Client URLs reached directly (access kind "direct"); otherwise members are discovered as pods. */
    endpoints: z.array(z.string().url()).optional(),
    namespace: z.string().optional(),
    selector: z.string().optional(),
    container: z.string().optional(),
    /** Secrets Manager secret with `ca`, `cert`, `key` (PEM) for gRPC over mutual TLS. */
    tlsSecretArn: z.string().startsWith("arn:").optional(),
    /**
     * The name etcd's server certificate carries, where it is not the host dialled: a port-forward dials
     * 127.0.0.1, which a StatefulSet's certificates (named for its headless service) may not list.
     */
    tlsServerName: z.string().min(1).optional(),
    /** Paths inside the etcd pod, for the exec source. */
    podTls: z
      .object({
        cacert: z.string().default("/etc/kubernetes/pki/etcd/ca.crt"),
        cert: z.string().default("/etc/kubernetes/pki/etcd/server.crt"),
        key: z.string().default("/etc/kubernetes/pki/etcd/server.key"),
      })
      .strict()
      .optional(),
    /**
     * What the verify step does when more members hold other data at the snapshot's revision than hold
     * its own (member-hash-check.ts): fail the backup as corrupt (`enforce`), or keep it VERIFIED and
     * record and warn of the mismatch (`report`) — for an etcd whose HashKV this product has not been
     * proven against (it has been against 3.4), until a first comparison has matched.
     */
    memberHashCheck: z.enum(MemberHashCheckModes).default("enforce"),
  })
  .strict()
  .transform((etcd, context) => {
    const members = presetMemberSelector(etcd);
    if ("problem" in members) {
      context.addIssue({ code: "custom", path: ["preset"], message: members.problem });
      return z.NEVER;
    }
    return { ...etcd, ...members, source: etcd.source ?? (etcd.preset === "bitnami" ? "exec" : "grpc") };
  });

/** kube-apiserver's readiness URL on the node, or "none" for no readiness check. */
const readyUrlSetting = z.union([z.literal("none"), z.string().url()]);

/**
 * A member's kube-apiserver readiness setting: its own, else the layout's. A URL, "none" (no check), or
 * undefined: its agent reads the URL from the node's kube-apiserver manifest.
 */
export function apiServerReadyUrlOf(
  layout: { apiServerReadyUrl?: string },
  member: { apiServerReadyUrl?: string } | undefined,
): string | undefined {
  return member?.apiServerReadyUrl ?? layout.apiServerReadyUrl;
}

const restoreMemberSchema = z
  .object({
    /** The etcd member name (--name), as in the cluster's initial-cluster. */
    name: z.string().min(1),
    /** The control-plane EC2 instance that runs this member (ssm executor). */
    instanceId: z.string().optional(),
    /**
     * Or the tag that names it, for control planes whose nodes are replaced (ssm executor): it must match
     * exactly one instance managed by Systems Manager, looked up when a restore is validated.
     */
    instanceTag: z
      .object({
        key: z
          .string()
          .min(1)
          .max(128)
          .regex(/^[^,=]+$/, "a tag key without ',' or '='"),
        value: z.string().min(1).max(256),
      })
      .strict()
      .optional(),
    /** The Kubernetes node that runs this member, where its agent pod is pinned (pod executor). */
    nodeName: z.string().min(1).optional(),
    dataDir: z.string().default("/var/lib/etcd"),
    manifestDir: z.string().default("/etc/kubernetes/manifests"),
    clientUrl: z.string().url(),
    peerUrl: z.string().url(),
    /** This node's kube-apiserver readiness URL (or none), when it differs from the layout's apiServerReadyUrl. */
    apiServerReadyUrl: readyUrlSetting.optional(),
    /** Where this member's etcd answers /health, when it differs from the layout's healthUrl. */
    healthUrl: z.string().url().optional(),
  })
  .strict();

/**
 * The default agent image of the pod executor: Debian bookworm with bash, coreutils and curl (what the agent
 * needs), from ECR Public's mirror of the Docker official images (no Docker Hub pull limits from AWS). A
 * release tag, not `latest`; clusters that pin by digest or pull from a private registry set agentImage.
 */
export const defaultAgentImage = "public.ecr.aws/docker/library/buildpack-deps:bookworm-curl";

const agentPodSchema = z
  .object({
    /** An image with bash >= 4.3, coreutils and curl (pgrep from procps is used when present). */
    agentImage: z.string().min(1).default(defaultAgentImage),
    /** Where the agent pods and their Secret are created; it must allow privileged pods (Pod Security). */
    namespace: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, "a namespace name")
      .default("kube-system"),
  })
  .strict();

const restoreSchema = z
  .object({
    /**
     * How the node agents run: Systems Manager on the control-plane instances, a pod pinned to each
     * member's node (through the Kubernetes API, started before anything stops), or local processes (demo).
     */
    executor: z.enum(["ssm", "pod", "local"]).default("ssm"),
    /** The pod executor's settings. */
    pod: agentPodSchema.default(() => agentPodSchema.parse({})),
    members: z.array(restoreMemberSchema).min(1),
    /** etcdutl (3.5+) or etcdctl (3.4, whose `snapshot restore` 3.6 removed). */
    restoreTool: z.enum(["etcdutl", "etcdctl"]).default("etcdutl"),
    /** Where the restore tool is on the nodes, when it is not on PATH. */
    toolPath: z.string().startsWith("/").optional(),
    /**
     * The restore tool staged in the bucket instead, for nodes without it (etcdutl is rarely installed on
     * a control-plane host): the binary uploaded as `<prefix>/_tools/<name>`, which each agent downloads
     * and runs only if it hashes to `sha256`.
     */
    toolObject: z
      .object({
        name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "a plain file name"),
        sha256: sha256Hex,
      })
      .strict()
      .optional(),
    /**
     * Where the agents ask etcd's health on their node, e.g. http://127.0.0.1:2381/health. Unset (the usual
     * case): each agent reads it from etcd's manifest — the first http URL of --listen-metrics-urls (kubeadm
     * serves /health there without TLS), else the member's clientUrl with the manifest's own
     * --trusted-ca-file, --cert-file and --key-file.
     */
    healthUrl: z.string().url().optional(),
    /** Static-pod manifest file names in each member's manifestDir; no API server manifest for external etcd. */
    etcdManifest: z.string().default("etcd.yaml"),
    apiServerManifest: z.string().optional().default("kube-apiserver.yaml"),
    /**
     * Where each control-plane node's kube-apiserver answers readiness, asked from the node itself; the
     * restore waits for 200 `ok` before restarting the scheduler and controller manager. kube-apiserver
     * serves /readyz to unauthenticated clients by default. For https://127.0.0.1:6443/readyz the agents
     * verify the certificate for the name `kubernetes`, which kubeadm's has (it names no loopback address).
     * Unset: each agent reads it from its node's kube-apiserver manifest (https, --secure-port, on
     * --bind-address or loopback), unless that manifest turns anonymous requests off. "none": no check,
     * and the approval request and the success notice say that readiness was not checked.
     */
    apiServerReadyUrl: readyUrlSetting.optional(),
    /**
     * CA bundle on the nodes that verifies an https apiServerReadyUrl; by default kubeadm's
     * /etc/kubernetes/pki/ca.crt when it exists (otherwise verification is skipped for a loopback URL only).
     */
    apiServerCaFile: z.string().startsWith("/").optional(),
    /** Manifests restarted after the API servers are back (empty: none), so nothing acts on stale caches. */
    restartManifests: z
      .array(fileName)
      .max(20)
      .default(["kube-scheduler.yaml", "kube-controller-manager.yaml"]),
    /** How long a person has to approve a restore. */
    approvalTimeoutSeconds: z
      .number()
      .int()
      .min(60)
      .max(maxApprovalTimeoutSeconds)
      .default(24 * 3600),
    /** Seconds between polls of the agents' status objects. */
    pollSeconds: z.number().int().min(1).max(60).default(5),
    /**
     * How long each barrier phase may take before the restore rolls back; at most 2400 s, so that the
     * agents' hour-long URLs reach the next plan (restore/agent-url-lifetimes.ts).
     */
    phaseTimeoutSeconds: z
      .number()
      .int()
      .min(30)
      .max(maxPhaseTimeoutSeconds)
      .default(defaultPhaseTimeoutSeconds),
    /**
     * How long each agent waits for etcd or kube-apiserver to stop, and to start (a large database takes
     * longer to open); either ends before its phase's deadline, however high it is set here.
     */
    stopTimeoutSeconds: z.number().int().min(10).max(maxPhaseTimeoutSeconds).default(agentStopWaitSeconds),
    startTimeoutSeconds: z.number().int().min(10).max(maxPhaseTimeoutSeconds).default(agentStartWaitSeconds),
  })
  .strict()
  .superRefine((layout, context) => {
    if (layout.executor === "ssm") {
      layout.members.forEach((member, index) => {
        if (!member.instanceId === !member.instanceTag) {
          context.addIssue({
            code: "custom",
            path: ["members", index, "instanceId"],
            message: `the ssm executor runs ${member.name}'s agent through Systems Manager: name its instance by instanceId (i-… or mi-…) or by instanceTag ({ key, value }), one of the two`,
          });
        }
      });
    }
    if (layout.toolPath && layout.toolObject) {
      context.addIssue({
        code: "custom",
        path: ["toolObject"],
        message: "give the restore tool's path on the nodes or its object in the bucket, not both",
      });
    }
    if (layout.executor === "pod") {
      if (!layout.toolPath && !layout.toolObject) {
        context.addIssue({
          code: "custom",
          path: ["toolPath"],
          message: `the pod executor's image has no ${layout.restoreTool}: give its path on the node (toolPath) or stage it in the bucket (toolObject)`,
        });
      }
      layout.members.forEach((member, index) => {
        if (!member.nodeName) {
          context.addIssue({
            code: "custom",
            path: ["members", index, "nodeName"],
            message: `the pod executor pins ${member.name}'s agent to its node: name the node`,
          });
        }
      });
    }
    checkRestartManifests(
      layout.restartManifests,
      [layout.etcdManifest, layout.apiServerManifest],
      ["restartManifests"],
      context,
    );
  });

export const targetSchema = z
  .object({
    name: clusterName,
    /** An EventBridge Scheduler expression: rate(1 hour), cron(0 * * * ? *). */
    schedule: z.string().regex(/^(rate|cron)\(.+\)$/, "an EventBridge expression such as rate(1 hour)"),
    retention: retentionSchema.default(() => retentionSchema.parse({})),
    access: accessSchema.default({ kind: "direct" }),
    etcd: etcdSchema.default(() => etcdSchema.parse({})),
    /** The member layout a restore needs; without it the cluster is backed up but not restored. */
    restore: restoreSchema.optional(),
  })
  .strict()
  .superRefine((target, context) => {
    try {
      longestScheduleGapSeconds(target.schedule);
    } catch (error) {
      context.addIssue({ code: "custom", path: ["schedule"], message: (error as Error).message });
    }
    if (target.access.kind === "direct" && directEndpoints(target).length === 0) {
      context.addIssue({
        code: "custom",
        path: ["etcd", "endpoints"],
        message:
          "direct access reaches etcd at its client URLs: list them, or give restore.members (or use eks or kubeconfig access)",
      });
    }
    if (target.restore?.executor === "pod" && target.access.kind === "direct") {
      context.addIssue({
        code: "custom",
        path: ["restore", "executor"],
        message:
          "the pod executor creates its pods through the Kubernetes API: access must be eks or kubeconfig",
      });
    }
  });

export const targetsFileSchema = z
  .object({
    /** Key prefix of every snapshot object. */
    prefix: z
      .string()
      .regex(
        /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/,
        "path segments of letters, digits, '.', '_' and '-', joined by single '/', with none at either end",
      )
      .default("etcd-backup"),
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

/** Where direct access reaches etcd: etcd.endpoints, or else the restore members' client URLs. */
export function directEndpoints(target: Pick<Target, "etcd" | "restore">): string[] {
  return target.etcd.endpoints ?? target.restore?.members.map((member) => member.clientUrl) ?? [];
}
export type TargetsFile = z.infer<typeof targetsFileSchema>;
export type RetentionPolicy = Target["retention"];
export type RestoreLayout = NonNullable<Target["restore"]>;

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
