// The contract between the restore state machine and the node-level restore agent
// (agent/etcd-restore-agent.sh). Both sides talk only through S3 objects reached by presigned URLs, so that
// nothing needs the Kubernetes API while etcd is down: the state machine writes one *plan* per member and
// moves it from phase to phase (the barriers), renewing the agent's presigned URLs in each plan it writes;
// the agent polls its plan, switches to the URLs it names, and writes its *status*.
//
// The plan travels as `key=value` lines whose values are percent-encoded (every byte outside RFC 3986's
// unreserved set `A-Z a-z 0-9 - . _ ~` becomes `%XX`). Percent-encoding is chosen because the encoded text
// holds no quote, `$`, backslash, space or line break at all, so the shell script can check each value
// against one character class and decode it with a fixed substitution (`%` → `\x`, then `printf %b`) — no
// eval, no jq, no shell quoting rules to get right — and a value can never end a line early or inject a key.
// The status is JSON, which the script builds with its own escaping and `parseStatus` checks.
import { posix } from "node:path";
import * as z from "zod";
import { InvalidInputError } from "../errors.js";
import { hasTrailerSize } from "../snapshot/snapshot-format.js";

/** The plan format this module writes and the agent accepts. */
export const planFormatVersion = 1;

/**
 * The barriers in the order the state machine moves the plans through them (every kube-apiserver stops
 * before any etcd member does), then the ways a restore ends.
 */
export const RestorePhases = [
  "prepare",
  "stop-apiserver",
  "stop",
  "restore",
  "start",
  "start-apiserver",
  "rollback",
  "finish",
  "abort",
] as const;
export type RestorePhase = (typeof RestorePhases)[number];

/** What a status reports as its phase before the agent could read any plan. */
export const noPhase = "none";

export const AgentStates = ["working", "done", "failed"] as const;
export type AgentState = (typeof AgentStates)[number];

export const RestoreTools = ["etcdctl", "etcdutl"] as const;
export type RestoreTool = (typeof RestoreTools)[number];

// Bash strings cannot hold NUL, so no value may contain it; anything else is carried faithfully.
const text = z
  .string()
  .min(1)
  .refine((value) => !value.includes("\0"), "must not contain a NUL character");

/** Used inside directory names beside the data dir (`<dataDir>.restore-<restoreId>`). */
const restoreId = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/,
    "1-100 letters, digits, '.', '_' or '-', not starting with a symbol",
  );

const absolutePath = text.refine(
  (value) =>
    value.startsWith("/") && value !== "/" && posix.normalize(value) === value && !value.endsWith("/"),
  "must be a normalized absolute path other than / (no trailing slash, no . or .. segments)",
);

/** A plain file name (a static-pod manifest): the agent refuses anything else. */
export const fileName = z
  .string()
  .regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$/, "a file name: letters, digits, '.', '_', '-', not hidden");

/** A sha256 as the agent compares it: 64 lowercase hex digits. */
export const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "64 lowercase hex digits");

/**
 * The manifests a restore restarts after the API is back: never etcd's or kube-apiserver's (the phases
 * stop and start those themselves), none twice. Checked on the targets file and again on each plan.
 */
export function checkRestartManifests(
  names: readonly string[],
  stoppedByThePhases: ReadonlyArray<string | undefined>,
  path: ReadonlyArray<string | number>,
  context: z.RefinementCtx,
): void {
  for (const [index, name] of names.entries()) {
    if (stoppedByThePhases.includes(name)) {
      context.addIssue({
        code: "custom",
        path: [...path, index],
        message: `${name} is etcd's or kube-apiserver's manifest, which the restore stops and starts itself`,
      });
    }
    if (names.indexOf(name) !== index) {
      context.addIssue({ code: "custom", path: [...path, index], message: `${name} appears twice` });
    }
  }
}

const httpUrl = text.refine((value) => {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}, "must be an http(s) URL");

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const seconds = z.number().int().min(1).max(86_400);

const memberSchema = z
  .object({
    /** The etcd member name (`--name`). */
    name: text,
    /** etcd's `--data-dir` on the node, e.g. /var/lib/etcd. */
    dataDir: absolutePath,
    /** The kubelet's static-pod directory, e.g. /etc/kubernetes/manifests. */
    manifestDir: absolutePath,
    /** Where the agent parks manifests to stop their pods; outside manifestDir. */
    parkedManifestDir: absolutePath,
    /** File name of etcd's static-pod manifest in manifestDir, e.g. etcd.yaml. */
    etcdManifest: fileName,
    /** File name of kube-apiserver's manifest; omitted on nodes that run no API server (external etcd). */
    apiServerManifest: fileName.optional(),
    clientUrl: httpUrl,
    peerUrl: httpUrl,
    /**
     * Where local health answers. Absent: the agent reads it from etcd's manifest — the first http URL of
     * --listen-metrics-urls (kubeadm: http://127.0.0.1:2381/health, no TLS), else `<clientUrl>/health`.
     */
    healthUrl: httpUrl.optional(),
    /**
     * Client certificate for an https health URL whose etcd requires one. Absent: the agent uses the
     * manifest's own --trusted-ca-file, --cert-file and --key-file.
     */
    healthTls: z
      .object({ caFile: absolutePath, certFile: absolutePath, keyFile: absolutePath })
      .strict()
      .optional(),
    /**
     * Where the local kube-apiserver answers readiness, e.g. https://127.0.0.1:6443/readyz (served to
     * unauthenticated clients by default, through system:public-info-viewer). The start-apiserver phase
     * waits until it answers 200 `ok`; without it the agent reads the URL from kube-apiserver's manifest
     * (checkApiReadiness below). An https loopback
     * URL is verified for the name `kubernetes` (kubeadm's certificate names no loopback address).
     */
    apiServerReadyUrl: httpUrl.optional(),
    /**
     * false: no readiness check at all. Otherwise, without apiServerReadyUrl, the agent asks
     * https://<--bind-address or 127.0.0.1>:<--secure-port>/readyz from kube-apiserver's manifest.
     */
    checkApiReadiness: z.boolean().optional(),
    /**
     * CA bundle that verifies an https apiServerReadyUrl. Without it the agent uses kubeadm's
     * /etc/kubernetes/pki/ca.crt when that exists, and otherwise skips verification for a loopback URL only.
     */
    apiServerCaFile: absolutePath.optional(),
    /**
     * Manifests in manifestDir whose pods start-apiserver restarts once the API is back (kubeadm:
     * kube-scheduler.yaml, kube-controller-manager.yaml), so that nothing acts on a cache of the state
     * before the restore. Absent or empty: nothing is restarted.
     */
    restartManifests: z.array(fileName).max(20).optional(),
  })
  .strict();

export const restorePlanSchema = z
  .object({
    restoreId,
    cluster: text,
    phase: z.enum(RestorePhases),
    snapshot: z
      .object({
        /** Presigned GET URL of the snapshot object: a secret, never logged. */
        url: httpUrl,
        /** Hex sha256 of the database without its 32-byte trailer, which equals the trailer. */
        sha256: sha256Hex,
        /** Size of the object, trailer included. */
        bytes: count.refine(hasTrailerSize, "a snapshot's size is 32 more than a multiple of 512"),
        revision: count,
      })
      .strict(),
    /**
     * Presigned GET URL of this plan, and PUT URL of the agent's status, that the agent uses from this
     * read on: renewed at every plan write, so that no URL has to outlive more than one phase (secrets,
     * never logged; see agent-url-lifetimes.ts). Absent: the agent keeps the URLs it has.
     */
    planUrl: httpUrl.optional(),
    statusUrl: httpUrl.optional(),
    member: memberSchema,
    /** etcd's `--initial-cluster` for the restored cluster: every member's `name=peerUrl`. */
    initialCluster: text,
    /** A new token, so that the restored cluster gets a new cluster id. */
    initialClusterToken: text,
    restoreTool: z.enum(RestoreTools),
    bumpRevision: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
    markCompacted: z.boolean().optional(),
    /** The tool may lack --bump-revision: then restore without it (allowWithoutRevisionBump). */
    revisionBumpOptional: z.boolean().optional(),
    etcdctlPath: absolutePath.optional(),
    etcdutlPath: absolutePath.optional(),
    /**
     * The restore tool staged in the bucket: a presigned GET URL (a secret, never logged, renewed with
     * every plan write) and the sha256 the download must have before the agent runs it.
     */
    tool: z.object({ url: httpUrl, sha256: sha256Hex }).strict().optional(),
    /** Free bytes needed on the data dir's filesystem: about 3× the database (download, new dir, old dir). */
    minimumFreeBytes: count,
    /** Bound on waiting for kube-apiserver, then etcd, to stop after its manifest is parked (default 120). */
    stopTimeoutSeconds: seconds.optional(),
    /** Bound on waiting for etcd to answer healthy after its manifest is back (default 300). */
    startTimeoutSeconds: seconds.optional(),
  })
  .strict()
  .superRefine((plan, context) => {
    if (plan.restoreTool === "etcdctl" && plan.bumpRevision !== undefined && !plan.revisionBumpOptional) {
      context.addIssue({
        code: "custom",
        path: ["restoreTool"],
        message:
          "etcdctl snapshot restore has --bump-revision only in some 3.4 releases: use etcdutl, or make the bump optional",
      });
    }
    if (plan.revisionBumpOptional && plan.bumpRevision === undefined) {
      context.addIssue({
        code: "custom",
        path: ["revisionBumpOptional"],
        message: "an optional revision bump needs --bump-revision",
      });
    }
    if (plan.tool && (plan.etcdctlPath || plan.etcdutlPath)) {
      context.addIssue({
        code: "custom",
        path: ["tool"],
        message: "a staged restore tool and a tool path on the node exclude each other",
      });
    }
    if (plan.markCompacted && plan.bumpRevision === undefined) {
      context.addIssue({
        code: "custom",
        path: ["markCompacted"],
        message: "--mark-compacted needs --bump-revision",
      });
    }
    checkRestartManifests(
      plan.member.restartManifests ?? [],
      [plan.member.etcdManifest, plan.member.apiServerManifest],
      ["member", "restartManifests"],
      context,
    );
    const self = `${plan.member.name}=${plan.member.peerUrl}`;
    if (!plan.initialCluster.split(",").includes(self)) {
      context.addIssue({
        code: "custom",
        path: ["initialCluster"],
        message: `must name this member as ${self}`,
      });
    }
  });

export type RestorePlan = z.infer<typeof restorePlanSchema>;

export const restoreAgentStatusSchema = z.object({
  restoreId: z.string(),
  member: z.string(),
  phase: z.union([z.enum(RestorePhases), z.literal(noPhase)]),
  state: z.enum(AgentStates),
  /** One line: what was done, or why it failed. */
  message: z.string(),
  /** Available bytes on the data dir's filesystem, reported by prepare. */
  freeBytes: count.optional(),
  /** Where the agent kept the data dir it replaced, reported from restore on. */
  oldDataDir: z.string().optional(),
  /** The restore tool and its version, e.g. "etcdctl 3.4.23", reported by prepare. */
  toolVersion: z.string().optional(),
  /**
   * Whether start-apiserver saw the local kube-apiserver answer ready, or ran no check (the plan had no
   * apiServerReadyUrl); reported from start-apiserver on.
   */
  apiReadiness: z.enum(["ready", "not checked"]).optional(),
  updatedAt: z.string().refine((value) => !Number.isNaN(Date.parse(value)), "must be an ISO 8601 time"),
  /** The agent's last log lines, with every presigned URL withheld. */
  log: z.array(z.string()),
});

export type RestoreAgentStatus = z.infer<typeof restoreAgentStatusSchema>;

// A list travels as one comma-separated value: its items (file names) cannot hold a comma.
type FieldKind = "string" | "integer" | "boolean" | "list";

// Every plan key in the order it is written; nested objects flatten to dotted keys. The agent script has
// the same list (a test checks that both accept what renderPlan writes).
const planFields: ReadonlyArray<readonly [string, FieldKind]> = [
  ["restoreId", "string"],
  ["cluster", "string"],
  ["phase", "string"],
  ["snapshot.url", "string"],
  ["snapshot.sha256", "string"],
  ["snapshot.bytes", "integer"],
  ["snapshot.revision", "integer"],
  ["planUrl", "string"],
  ["statusUrl", "string"],
  ["member.name", "string"],
  ["member.dataDir", "string"],
  ["member.manifestDir", "string"],
  ["member.parkedManifestDir", "string"],
  ["member.etcdManifest", "string"],
  ["member.apiServerManifest", "string"],
  ["member.clientUrl", "string"],
  ["member.peerUrl", "string"],
  ["member.healthUrl", "string"],
  ["member.healthTls.caFile", "string"],
  ["member.healthTls.certFile", "string"],
  ["member.healthTls.keyFile", "string"],
  ["member.apiServerReadyUrl", "string"],
  ["member.checkApiReadiness", "boolean"],
  ["member.apiServerCaFile", "string"],
  ["member.restartManifests", "list"],
  ["initialCluster", "string"],
  ["initialClusterToken", "string"],
  ["restoreTool", "string"],
  ["bumpRevision", "integer"],
  ["markCompacted", "boolean"],
  ["revisionBumpOptional", "boolean"],
  ["tool.url", "string"],
  ["tool.sha256", "string"],
  ["etcdctlPath", "string"],
  ["etcdutlPath", "string"],
  ["minimumFreeBytes", "integer"],
  ["stopTimeoutSeconds", "integer"],
  ["startTimeoutSeconds", "integer"],
];
const planFieldKinds = new Map(planFields);

/** Percent-encodes every UTF-8 byte outside RFC 3986's unreserved characters. */
export function encodePlanValue(value: string): string {
  let encoded = "";
  for (const byte of Buffer.from(value, "utf8")) {
    const isUnreserved =
      (byte >= 0x30 && byte <= 0x39) ||
      (byte >= 0x41 && byte <= 0x5a) ||
      (byte >= 0x61 && byte <= 0x7a) ||
      byte === 0x2d ||
      byte === 0x2e ||
      byte === 0x5f ||
      byte === 0x7e;
    encoded += isUnreserved
      ? String.fromCharCode(byte)
      : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return encoded;
}

const encodedValuePattern = /^(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})*$/;

export function decodePlanValue(encoded: string): string {
  if (!encodedValuePattern.test(encoded)) {
    throw new InvalidInputError("plan value is not percent-encoded");
  }
  const bytes = Buffer.from(
    encoded.replace(/%([0-9A-Fa-f]{2})/g, (_match, hex: string) =>
      String.fromCharCode(Number.parseInt(hex, 16)),
    ),
    "latin1",
  );
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

function lookup(plan: Record<string, unknown>, dottedKey: string): unknown {
  let node: unknown = plan;
  for (const part of dottedKey.split(".")) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** Checks a plan and writes it in the line format the agent reads. */
export function renderPlan(plan: RestorePlan): string {
  const checked = restorePlanSchema.safeParse(plan);
  if (!checked.success) {
    throw new InvalidInputError(`invalid restore plan: ${describeIssues(checked.error)}`);
  }
  const lines = [
    `# etcd restore plan for ${encodePlanValue(checked.data.member.name)}`,
    `format=${planFormatVersion}`,
  ];
  for (const [key] of planFields) {
    const value = lookup(checked.data, key);
    if (value === undefined) continue;
    const text = Array.isArray(value) ? value.join(",") : String(value);
    lines.push(`${key}=${encodePlanValue(text)}`);
  }
  // A last line proves that the agent read the whole object.
  lines.push("end=1");
  return `${lines.join("\n")}\n`;
}

/** Reads a plan written by renderPlan (for the state machine's own checks and for tests). */
export function parsePlan(text: string): RestorePlan {
  const plan: Record<string, unknown> = {};
  const seen = new Set<string>();
  let format: string | undefined;
  let ended = false;
  const lines = text.split("\n");
  for (const [index, line] of lines.entries()) {
    if (line === "" || line.startsWith("#")) continue;
    if (ended) throw new InvalidInputError(`plan line ${index + 1} follows the end line`);
    const match = /^([A-Za-z][A-Za-z0-9.]*)=(.*)$/.exec(line);
    if (!match) throw new InvalidInputError(`plan line ${index + 1} is not key=value`);
    const key = match[1] as string;
    const raw = match[2] as string;
    if (seen.has(key)) throw new InvalidInputError(`plan key ${key} appears twice`);
    seen.add(key);
    if (key === "format") {
      format = raw;
      continue;
    }
    if (key === "end") {
      ended = true;
      continue;
    }
    const kind = planFieldKinds.get(key);
    if (kind === undefined) continue; // a newer writer's optional field
    const value = decodePlanValue(raw);
    assign(plan, key, convert(key, kind, value));
  }
  if (format !== String(planFormatVersion)) {
    throw new InvalidInputError(`plan format ${format ?? "(missing)"} is not ${planFormatVersion}`);
  }
  if (!ended) throw new InvalidInputError("plan has no end line: it was cut short");
  const checked = restorePlanSchema.safeParse(plan);
  if (!checked.success) {
    throw new InvalidInputError(`invalid restore plan: ${describeIssues(checked.error)}`);
  }
  return checked.data;
}

function convert(key: string, kind: FieldKind, value: string): unknown {
  if (kind === "string") return value;
  if (kind === "list") return value === "" ? [] : value.split(",");
  if (kind === "boolean") {
    if (value === "true" || value === "false") return value === "true";
    throw new InvalidInputError(`plan key ${key} must be true or false`);
  }
  // No leading zeros, as the agent requires: bash arithmetic would read 010 as octal.
  if (!/^(?:0|[1-9][0-9]{0,15})$/.test(value)) {
    throw new InvalidInputError(`plan key ${key} must be a whole number without leading zeros`);
  }
  return Number(value);
}

function assign(target: Record<string, unknown>, dottedKey: string, value: unknown): void {
  const parts = dottedKey.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const child = node[part];
    if (child === undefined) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1] as string] = value;
}

/** Reads a status object written by the agent. */
export function parseStatus(text: string): RestoreAgentStatus {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InvalidInputError(`restore agent status is not JSON: ${(error as Error).message}`);
  }
  const checked = restoreAgentStatusSchema.safeParse(json);
  if (!checked.success) {
    throw new InvalidInputError(`invalid restore agent status: ${describeIssues(checked.error)}`);
  }
  return checked.data;
}

/** The JSON the agent writes, for stand-ins and tests. */
export function renderStatus(status: RestoreAgentStatus): string {
  return JSON.stringify(restoreAgentStatusSchema.parse(status));
}

/**
 * Whether a status says that this restore's member has finished `phase`. finish changes nothing on the
 * node, and once the restored API server serves, the kubelet kills agent pods that it never knew: an agent
 * that reported start-apiserver done and vanished before reading the finish plan has finished too.
 */
export function hasCompletedPhase(
  status: RestoreAgentStatus,
  restoreId: string,
  phase: RestorePhase,
): boolean {
  const completes = phase === "finish" ? ["finish", "start-apiserver"] : [phase];
  return status.restoreId === restoreId && completes.includes(status.phase) && status.state === "done";
}

function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join(".") || "(plan)"}: ${issue.message}`).join("; ");
}
