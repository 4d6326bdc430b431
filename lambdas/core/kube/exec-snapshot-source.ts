// The `exec` snapshot source: `etcdctl snapshot save` run inside the etcd pod through the exec API, the
// saved file streamed out on stdout. etcdctl cannot write a snapshot to stdout (FACTS.md §1), so one small
// POSIX sh script saves it to a temporary file — never on the etcd data volume, after checking free space —
// `cat`s it, and removes it on every path: on exit (traps for EXIT, HUP, INT, PIPE, TERM), and, for a
// SIGKILL of the whole exec (a killed container process group), from a watcher in its own session.
// Needs a shell, etcdctl, sed, df, wc and cat in the image; distroless etcd images need the grpc source
// through a port-forward instead. Proven against the stand-in API server and a local etcd only: unproven on
// a live cluster until it has been run on one.
import { randomBytes } from "node:crypto";
import { posix } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import {
  EtcdAccessDeniedError,
  type EtcdBackupError,
  EtcdUnavailableError,
  InvalidInputError,
  SnapshotCorruptError,
  SnapshotStreamInterruptedError,
} from "../errors.js";
import type { MemberStatus } from "../etcd/etcd-client.js";
import { isRefusalText } from "../etcd/etcd-refusal.js";
import { snapshotTrailerBytes } from "../snapshot/snapshot-format.js";
import type { MemberKvHash, SnapshotSource } from "../snapshot/snapshot-source.js";
import { describeConnectError } from "./kube-api-failure.js";
import { type ExecFailure, type PodContainer, PodExecStream, runPodCommand } from "./pod-exec.js";

export interface EtcdctlConnection {
  /** The member's client URL as seen inside the pod. Default `https://127.0.0.1:2379`. */
  endpoint?: string;
  /** Paths INSIDE the pod, e.g. /etc/kubernetes/pki/etcd/ca.crt for kubeadm. */
  cacert?: string;
  cert?: string;
  key?: string;
}

export interface ExecSnapshotSourceOptions {
  kubeConfig: KubeConfig;
  pod: PodContainer;
  etcdctl?: EtcdctlConnection;
  /** Where the snapshot is saved inside the pod before it is streamed out. Default /tmp. */
  tempDir?: string;
  /** The member's data directory inside the pod (from its --data-dir); tempDir may not lie under it. */
  etcdDataDir?: string;
  /** `--command-timeout` of `etcdctl snapshot save`, in seconds. Default 600. */
  commandTimeoutSeconds?: number;
  /** `--command-timeout` of `etcdctl endpoint status`, in seconds. Default 30 (or commandTimeoutSeconds if lower). */
  statusTimeoutSeconds?: number;
  /** Bytes buffered in the stream before the WebSocket is paused. Default 1 MiB. */
  highWaterMark?: number;
  /**
   * The container's environment variable holding etcd's root password (Bitnami's ETCD_ROOT_PASSWORD, with
   * etcd's auth on): etcdctl logs in as root with it, read in the pod, so it never leaves the pod.
   */
  rootPasswordEnv?: string;
}

/** kubeadm's data directory, refused as tempDir when no etcdDataDir is given. */
const kubeadmDataDir = "/var/lib/etcd";
const defaultEndpoint = "https://127.0.0.1:2379";
const sizeMarker = "etcd-backup: snapshot-bytes=";

/** Exit codes of the snapshot script, each mapped to one named error. */
export const SnapshotScriptExit = {
  endpointStatusFailed: 10,
  notEnoughSpace: 11,
  snapshotSaveFailed: 12,
  readFailed: 13,
  tempDirUnusable: 14,
  etcdctlMissing: 15,
} as const;

// Both scripts: etcdctl's settings from the flags given, nothing from the container's ETCDCTL_*
// variables, except the root password read from the variable named in $password_env (checked to be a name
// before it reaches eval), as ETCDCTL_USER, so that it is on no command line.
const etcdctlEnvironment = `
unset ETCDCTL_ENDPOINTS ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY ETCDCTL_COMMAND_TIMEOUT ETCDCTL_WRITE_OUT ETCDCTL_USER
ETCDCTL_API=3
export ETCDCTL_API
if [ -n "$password_env" ]; then
  eval "etcd_password=\\\${$password_env:-}"
  if [ -n "$etcd_password" ]; then ETCDCTL_USER="root:$etcd_password"; export ETCDCTL_USER; fi
fi
`;

// Arguments: $1 temp dir, $2 file name, $3 status timeout, $4 save timeout, $5 the root password's variable
// (or empty), then etcdctl's connection flags. They are passed as arguments, never spliced into the text,
// so no value needs quoting.
// The free-space check needs dbSize (an upper bound of the snapshot) plus 10% and 1 MiB for growth.
export const snapshotScript = `
tmp_dir=$1 snapshot_name=$2 status_timeout=$3 save_timeout=$4 password_env=$5
shift 5
${etcdctlEnvironment}
snapshot=$tmp_dir/$snapshot_name
fail() { code=$1; shift; printf 'etcd-backup: %s\\n' "$*" >&2; exit "$code"; }
trap 'rm -f "$snapshot" "$snapshot.part"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
command -v etcdctl >/dev/null 2>&1 || fail 15 "etcdctl is not on the PATH of this container"
{ [ -d "$tmp_dir" ] && [ -w "$tmp_dir" ]; } || fail 14 "the temporary directory $tmp_dir does not exist or is not writable"
if command -v setsid >/dev/null 2>&1; then
  setsid sh -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; rm -f "$2" "$2.part"' etcd-backup-cleanup "$$" "$snapshot" </dev/null >/dev/null 2>&1 &
fi
status=$(etcdctl "$@" --command-timeout="\${status_timeout}s" endpoint status -w json) || fail 10 "etcdctl endpoint status failed"
db_bytes=$(printf '%s\\n' "$status" | sed -n 's/.*"dbSize":\\([0-9][0-9]*\\).*/\\1/p')
[ -n "$db_bytes" ] || fail 10 "etcdctl endpoint status reported no dbSize"
available_kb=$(df -Pk "$tmp_dir" | { read -r _header; read -r _fs _size _used available _rest; printf '%s' "\${available:-}"; })
case $available_kb in ''|*[!0-9]*) fail 11 "could not read the free space of $tmp_dir from df -Pk";; esac
needed_kb=$((db_bytes / 1024 + db_bytes / 10240 + 1024))
[ "$available_kb" -ge "$needed_kb" ] || fail 11 "not enough free space in $tmp_dir: $available_kb KiB available, $needed_kb KiB needed for a database of $db_bytes bytes"
etcdctl "$@" --command-timeout="\${save_timeout}s" snapshot save "$snapshot" >&2 || fail 12 "etcdctl snapshot save failed"
size=$(wc -c < "$snapshot") || fail 12 "could not read the size of $snapshot"
size=\${size##* }
case $size in ''|*[!0-9]*) fail 12 "could not read the size of $snapshot";; esac
printf '${sizeMarker}%s\\n' "$size" >&2
cat "$snapshot" || fail 13 "reading $snapshot failed"
`;

// Arguments: $1 timeout, $2 the root password's variable (or empty), then etcdctl's connection flags and
// command (endpoint status, endpoint hashkv).
const queryScript = `
timeout=$1 password_env=$2
shift 2
${etcdctlEnvironment}
exec etcdctl "$@" --command-timeout="\${timeout}s" -w json
`;

export function createExecSnapshotSource(options: ExecSnapshotSourceOptions): SnapshotSource {
  const { pod } = options;
  const endpoint = checkEndpoint(options.etcdctl?.endpoint ?? defaultEndpoint);
  const tempDir = checkTempDir(options.tempDir ?? "/tmp", options.etcdDataDir);
  const saveTimeout = checkSeconds("commandTimeoutSeconds", options.commandTimeoutSeconds ?? 600);
  const statusTimeout = checkSeconds(
    "statusTimeoutSeconds",
    options.statusTimeoutSeconds ?? Math.min(30, saveTimeout),
  );
  const passwordEnv = options.rootPasswordEnv ?? "";
  if (!/^([A-Za-z_][A-Za-z0-9_]*)?$/.test(passwordEnv)) {
    throw new InvalidInputError(`rootPasswordEnv: "${passwordEnv}" is not an environment variable's name`);
  }
  const connectionFlags = [`--endpoints=${endpoint}`];
  for (const name of ["cacert", "cert", "key"] as const) {
    const path = options.etcdctl?.[name];
    if (path !== undefined) connectionFlags.push(`--${name}=${path}`);
  }
  const description = `pod ${pod.namespace}/${pod.name} container ${pod.container} (exec, etcdctl ${endpoint})`;
  const open = new Set<PodExecStream>();
  const query = async (timeout: number, ...command: string[]) => {
    const output = await runPodCommand({
      kubeConfig: options.kubeConfig,
      pod,
      command: [
        "sh",
        "-c",
        queryScript,
        "etcd-backup-query",
        String(timeout),
        passwordEnv,
        ...connectionFlags,
        ...command,
      ],
      describeFailure: (failure) =>
        describeFailure(description, `etcdctl ${command.slice(0, 2).join(" ")}`, failure, "status"),
    });
    return output.toString("utf8");
  };

  return {
    description,
    async status() {
      return parseEndpointStatus(await query(statusTimeout, "endpoint", "status"), endpoint, description);
    },
    async hashKV(revision) {
      // The member reads its whole key history to answer: longer than a status on a large database.
      const timeout = Math.max(statusTimeout, 120);
      return parseEndpointHashKV(
        await query(timeout, "endpoint", "hashkv", `--rev=${revision}`),
        description,
      );
    },
    openStream() {
      const snapshotName = `etcd-backup-${randomBytes(8).toString("hex")}.db`;
      const stream = new ExecSnapshotStream({
        kubeConfig: options.kubeConfig,
        pod,
        command: [
          "sh",
          "-c",
          snapshotScript,
          "etcd-backup-snapshot",
          tempDir,
          snapshotName,
          String(statusTimeout),
          String(saveTimeout),
          passwordEnv,
          ...connectionFlags,
        ],
        highWaterMark: options.highWaterMark,
        describeFailure: (failure) =>
          describeFailure(description, "etcdctl snapshot save", failure, "snapshot"),
      });
      open.add(stream);
      stream.once("close", () => open.delete(stream));
      return stream;
    },
    close() {
      for (const stream of open) stream.destroy();
    },
  };
}

/** The exec output with the size the script announced on stderr, checked when the status says Success. */
class ExecSnapshotStream extends PodExecStream {
  private announcedBytes: number | undefined;
  readonly serverVersion: string | undefined = undefined;

  /** Database bytes (trailer excluded), for the integrity tap's check; known once the file is saved. */
  get databaseBytes(): number | undefined {
    return this.announcedBytes === undefined ? undefined : this.announcedBytes - snapshotTrailerBytes;
  }

  protected override onStderrLine(line: string): void {
    if (line.startsWith(sizeMarker)) this.announcedBytes = Number(line.slice(sizeMarker.length));
  }

  protected override checkSuccess(): Error | undefined {
    if (this.announcedBytes === undefined || !Number.isSafeInteger(this.announcedBytes)) {
      return new SnapshotCorruptError(
        `the exec snapshot exited 0 after ${this.bytesReceived} bytes without announcing the snapshot's size: the output did not come from a completed save`,
      );
    }
    if (this.bytesReceived !== this.announcedBytes) {
      return new SnapshotCorruptError(
        `the exec snapshot's output was truncated: ${this.bytesReceived} bytes received, the saved file holds ${this.announcedBytes}`,
      );
    }
    return undefined;
  }
}

function describeFailure(
  description: string,
  what: string,
  failure: ExecFailure,
  call: "status" | "snapshot",
): EtcdBackupError {
  const where = `${what} in ${description}`;
  const withStderr = (text: string, stderr: string) => {
    const tail = cleanStderr(stderr);
    return tail === "" ? text : `${text}; stderr: ${tail}`;
  };
  switch (failure.kind) {
    case "connect":
      return describeConnectError(failure.error);
    case "status": {
      if (/executable file not found|no such file or directory/i.test(failure.message)) {
        return new InvalidInputError(
          `${where}: the container cannot run sh (${failure.message}); a distroless etcd image needs the grpc source through a port-forward`,
        );
      }
      return new EtcdUnavailableError(
        withStderr(`${where} failed: ${failure.reason}: ${failure.message}`, failure.stderr),
      );
    }
    case "dropped": {
      const text = withStderr(`${where}: ${failure.detail}`, failure.stderr);
      return call === "snapshot" ? new SnapshotStreamInterruptedError(text) : new EtcdUnavailableError(text);
    }
    case "output":
      return new EtcdUnavailableError(withStderr(`${where}: ${failure.detail}`, failure.stderr));
    case "exit":
      return describeExit(
        where,
        failure.exitCode,
        withStderr(`${where} exited with code ${failure.exitCode}`, failure.stderr),
        call,
      );
  }
}

function describeExit(
  where: string,
  code: number,
  text: string,
  call: "status" | "snapshot",
): EtcdBackupError {
  if (code === 126 || code === 127 || (call === "snapshot" && code === SnapshotScriptExit.etcdctlMissing)) {
    return new InvalidInputError(`${text} (${where}: a command is missing from the container image)`);
  }
  // etcd refused etcdctl's identity (RBAC lets Snapshot only to root; a certificate it rejects): no retry.
  if (isRefusalText(text)) return new EtcdAccessDeniedError(text);
  if (call === "status") return new EtcdUnavailableError(text);
  switch (code) {
    case SnapshotScriptExit.notEnoughSpace:
    case SnapshotScriptExit.tempDirUnusable:
      // The temporary directory is a configuration choice: another one is needed, not a retry.
      return new InvalidInputError(text);
    case SnapshotScriptExit.readFailed:
      return new SnapshotStreamInterruptedError(text);
    default:
      // 128 + n: killed by signal n (the container or pod went away, or the connection broke: SIGPIPE).
      return code > 128 ? new SnapshotStreamInterruptedError(text) : new EtcdUnavailableError(text);
  }
}

/** The last lines of stderr without the script's own markers, short enough for a Step Functions cause. */
function cleanStderr(stderr: string): string {
  const lines = stderr
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith(sizeMarker))
    .join("\n");
  return lines.length > 2000 ? `…${lines.slice(-2000)}` : lines;
}

interface EtcdctlEndpointStatus {
  Endpoint?: string;
  Status?: {
    header?: { cluster_id?: string; member_id?: string; revision?: number };
    version?: string;
    dbSize?: number;
    dbSizeInUse?: number;
    leader?: string;
    raftIndex?: number;
    isLearner?: boolean;
    errors?: string[];
  };
}

/**
 * `etcdctl endpoint status -w json`: ids are uint64 printed as JSON numbers, beyond what a double holds
 * exactly, so they are quoted before parsing (and come out as the decimal strings the gRPC client gives).
 */
export function parseEndpointStatus(text: string, endpoint: string, description: string): MemberStatus {
  const quoted = text.replace(/"(cluster_id|member_id|leader)":\s*(\d+)/g, '"$1":"$2"');
  let entries: EtcdctlEndpointStatus[];
  try {
    entries = JSON.parse(quoted) as EtcdctlEndpointStatus[];
  } catch {
    throw new EtcdUnavailableError(
      `etcdctl endpoint status in ${description} printed no JSON: ${text.slice(0, 300)}`,
    );
  }
  const status = Array.isArray(entries) ? entries[0]?.Status : undefined;
  if (!status?.header) {
    throw new EtcdUnavailableError(
      `etcdctl endpoint status in ${description} reported no status: ${text.slice(0, 300)}`,
    );
  }
  return {
    endpoint,
    memberId: status.header.member_id ?? "0",
    clusterId: status.header.cluster_id ?? "0",
    leaderId: status.leader ?? "0",
    revision: Number(status.header.revision ?? 0),
    raftIndex: Number(status.raftIndex ?? 0),
    dbSize: Number(status.dbSize ?? 0),
    dbSizeInUse: Number(status.dbSizeInUse ?? status.dbSize ?? 0),
    version: status.version ?? "",
    isLearner: status.isLearner ?? false,
    errors: status.errors ?? [],
  };
}

/** `etcdctl endpoint hashkv -w json`: `[{"Endpoint": …, "HashKV": {"header": …, "hash": …, "compact_revision": …}}]`. */
export function parseEndpointHashKV(text: string, description: string): MemberKvHash {
  let entries: Array<{ HashKV?: { hash?: number; compact_revision?: number } }>;
  try {
    entries = JSON.parse(text) as typeof entries;
  } catch {
    throw new EtcdUnavailableError(
      `etcdctl endpoint hashkv in ${description} printed no JSON: ${text.slice(0, 300)}`,
    );
  }
  const answer = Array.isArray(entries) ? entries[0]?.HashKV : undefined;
  if (typeof answer?.hash !== "number") {
    throw new EtcdUnavailableError(
      `etcdctl endpoint hashkv in ${description} reported no hash: ${text.slice(0, 300)}`,
    );
  }
  return { hash: answer.hash, compactRevision: answer.compact_revision ?? -1 };
}

function checkEndpoint(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new InvalidInputError(
      `etcdctl endpoint "${endpoint}" is not a URL: expected e.g. ${defaultEndpoint}`,
    );
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || endpoint.includes(",")) {
    throw new InvalidInputError(
      `etcdctl endpoint "${endpoint}" must be one http:// or https:// URL (snapshot save takes exactly one)`,
    );
  }
  if (url.hostname === "localhost") {
    // etcd-io/etcd#13166: snapshot save through kubectl exec against localhost has been seen to hang.
    throw new InvalidInputError(
      `etcdctl endpoint "${endpoint}": use 127.0.0.1 instead of localhost (etcd-io/etcd#13166)`,
    );
  }
  return endpoint;
}

function checkTempDir(tempDir: string, etcdDataDir: string | undefined): string {
  if (!posix.isAbsolute(tempDir) || tempDir.includes("\0")) {
    throw new InvalidInputError(`tempDir "${tempDir}" must be an absolute path inside the pod`);
  }
  const normalized = posix.normalize(tempDir).replace(/(.)\/+$/, "$1");
  const dataDir = posix.normalize(etcdDataDir ?? kubeadmDataDir).replace(/(.)\/+$/, "$1");
  const relative = posix.relative(dataDir, normalized);
  const outside = relative === ".." || relative.startsWith("../") || posix.isAbsolute(relative);
  if (!outside) {
    throw new InvalidInputError(
      `tempDir "${tempDir}" lies in the etcd data directory ${dataDir}: a snapshot saved there could fill the volume etcd writes to; use e.g. /tmp`,
    );
  }
  return normalized;
}

function checkSeconds(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1)
    throw new InvalidInputError(`${name} must be a positive whole number of seconds`);
  return value;
}
