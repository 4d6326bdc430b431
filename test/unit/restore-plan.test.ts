// The plan/status contract between the restore state machine and the agent script, on both sides: the
// TypeScript writer and reader, and the script's own parser and JSON writer (run in real bash).
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodePlanValue,
  encodePlanValue,
  hasCompletedPhase,
  parsePlan,
  parseStatus,
  type RestoreAgentStatus,
  RestorePhases,
  type RestorePlan,
  renderPlan,
  renderStatus,
} from "../../lambdas/core/restore/restore-plan.js";

const run = promisify(execFile);
const agentScript = join(import.meta.dirname, "../../lambdas/core/restore/agent/etcd-restore-agent.sh");

let scratch: string;
let canary: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "etcd-backup-plan-"));
  canary = join(scratch, "pwned");
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

function basePlan(): RestorePlan {
  return {
    restoreId: "r-20261124-1",
    cluster: "prod-eu-1",
    phase: "restore",
    snapshot: {
      url: "https://bucket.s3.eu-west-1.amazonaws.com/etcd/prod/2026/11/24/01.db?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc123",
      sha256: "e9aa53f5bf7490cadd68d3a6eaa8db29ded5480beb67df0c9087e1a3e1d8ac9e",
      bytes: 20480 + 32,
      revision: 4242,
    },
    planUrl:
      "https://bucket.s3.eu-west-1.amazonaws.com/etcd/prod/_restores/r-20261124-1/cp-1/plan.txt?X-Amz-Signature=def456",
    statusUrl:
      "https://bucket.s3.eu-west-1.amazonaws.com/etcd/prod/_restores/r-20261124-1/cp-1/status.json?X-Amz-Signature=789abc",
    member: {
      name: "cp-1",
      dataDir: "/var/lib/etcd",
      manifestDir: "/etc/kubernetes/manifests",
      parkedManifestDir: "/etc/kubernetes/manifests.parked",
      etcdManifest: "etcd.yaml",
      apiServerManifest: "kube-apiserver.yaml",
      clientUrl: "https://10.0.0.1:2379",
      peerUrl: "https://10.0.0.1:2380",
      healthUrl: "http://127.0.0.1:2381/health",
      apiServerReadyUrl: "https://127.0.0.1:6443/readyz",
      apiServerCaFile: "/etc/kubernetes/pki/ca.crt",
      restartManifests: ["kube-scheduler.yaml", "kube-controller-manager.yaml"],
    },
    initialCluster: "cp-1=https://10.0.0.1:2380,cp-2=https://10.0.0.2:2380,cp-3=https://10.0.0.3:2380",
    initialClusterToken: "restore-r-20261124-1",
    restoreTool: "etcdutl",
    bumpRevision: 1_000_000_000,
    markCompacted: true,
    etcdutlPath: "/opt/etcd-backup/bin/etcdutl",
    minimumFreeBytes: 3 * (20480 + 32),
    stopTimeoutSeconds: 90,
    startTimeoutSeconds: 240,
  };
}

/** Values a hostile or careless writer could put in free-text fields. */
function hostilePlan(): RestorePlan {
  const payload = `x"; touch ${canary}; echo "$(touch ${canary})\`touch ${canary}\`'\nphase=abort\nend=1\n\\x41 %41 \${HOME} é 🦀\t\r`;
  const name = `cp-1 $(touch ${canary})"'\n=x`;
  const peerUrl = "https://10.0.0.1:2380";
  const plan = basePlan();
  return {
    ...plan,
    cluster: payload,
    snapshot: { ...plan.snapshot, url: `http://127.0.0.1:1/k?X-Amz-Signature=abc&q="$(touch${canary})"` },
    statusUrl: `http://127.0.0.1:1/s?X-Amz-Signature=abc&q='$(touch${canary})'%0Aphase=abort&end=1`,
    member: {
      ...plan.member,
      name,
      peerUrl,
      dataDir: `/var/lib/etcd dir/$(touch ${canary})/'quoted'/"etcd"`,
      apiServerReadyUrl: `https://127.0.0.1:6443/readyz?verbose&x="$(touch${canary})"'\`id\``,
      apiServerCaFile: `/etc/pki dir/$(touch ${canary})/"ca".crt`,
    },
    initialCluster: `${name}=${peerUrl},cp-2=https://10.0.0.2:2380`,
    initialClusterToken: payload,
  };
}

/** The plan as dotted keys with the text values the agent should end up with. */
function flatten(value: unknown, prefix = ""): Map<string, string> {
  const entries = new Map<string, string>();
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const dotted = prefix ? `${prefix}.${key}` : key;
    if (Array.isArray(child)) {
      entries.set(dotted, child.join(","));
    } else if (child !== null && typeof child === "object") {
      for (const [nestedKey, nestedValue] of flatten(child, dotted)) entries.set(nestedKey, nestedValue);
    } else if (child !== undefined) {
      entries.set(dotted, String(child));
    }
  }
  return entries;
}

/** Runs the agent script's own plan parser on `text`; returns the parsed keys or its complaint. */
async function parseWithAgent(text: string): Promise<{ plan?: Map<string, string>; problem?: string }> {
  const file = join(scratch, `plan-${Math.random().toString(36).slice(2)}`);
  await writeFile(file, text);
  const code = `source "$1"
if parse_plan_file "$2" >"$2.problem"; then
  for key in "\${!plan[@]}"; do printf '%s\\0%s\\0' "$key" "\${plan[$key]}"; done
else
  cat "$2.problem"; exit 3
fi`;
  try {
    const { stdout } = await run("bash", ["-c", code, "agent-test", agentScript, file], { encoding: "utf8" });
    const parts = stdout.split("\0");
    const plan = new Map<string, string>();
    for (let index = 0; index + 1 < parts.length; index += 2)
      plan.set(parts[index] as string, parts[index + 1] as string);
    return { plan };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string };
    if (failure.code === 3) return { problem: (failure.stdout ?? "").trim() };
    throw error;
  }
}

/** Runs the agent script's status writer with the given fields and returns the JSON it would PUT. */
async function statusFromAgent(fields: { message: string; logLines: string[]; statusUrl?: string }) {
  const code = `source "$1"
restore_id=r-1 member_name=cp-1 phase=restore state=failed message=$2 status_url=\${3:-}
free_bytes=123 old_data_dir="/var/lib/etcd.pre-restore-r-1" tool_version="etcdutl 3.6.5"
shift 3
log_lines=("$@")
status_json`;
  const { stdout } = await run(
    "bash",
    ["-c", code, "agent-test", agentScript, fields.message, fields.statusUrl ?? "", ...fields.logLines],
    { encoding: "utf8" },
  );
  return stdout;
}

describe("restore plan format", () => {
  it("round-trips a plan through renderPlan and parsePlan", () => {
    const plan = basePlan();
    expect(parsePlan(renderPlan(plan))).toEqual(plan);
  });

  it("round-trips a plan that names no renewed URLs, as an older writer's, on both sides", async () => {
    const { planUrl, statusUrl, ...older } = basePlan();
    expect(parsePlan(renderPlan(older))).toEqual(older);
    expect(renderPlan(older)).not.toMatch(/^(planUrl|statusUrl)=/m);
    expect((await parseWithAgent(renderPlan(older))).plan).toEqual(flatten(older));
  });

  it("round-trips the start-apiserver fields: a list of manifests, an empty list, and none at all", () => {
    const plan = basePlan();
    expect(renderPlan(plan)).toContain(
      "member.restartManifests=kube-scheduler.yaml%2Ckube-controller-manager.yaml\n",
    );
    const empty = { ...plan, member: { ...plan.member, restartManifests: [] } };
    expect(renderPlan(empty)).toContain("member.restartManifests=\n");
    expect(parsePlan(renderPlan(empty))).toEqual(empty);
    const { apiServerReadyUrl, apiServerCaFile, restartManifests, ...older } = plan.member;
    const withoutThem = { ...plan, member: older };
    expect(parsePlan(renderPlan(withoutThem))).toEqual(withoutThem);
    expect(renderPlan(withoutThem)).not.toMatch(/apiServerReadyUrl|apiServerCaFile|restartManifests/);
  });

  it("writes hostile values as inert percent-encoded lines that read back exactly", () => {
    const plan = hostilePlan();
    const text = renderPlan(plan);
    const lines = text.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
    // format, every field present, end: nothing a value held became a line of its own.
    expect(lines).toHaveLength(flatten(plan).size + 2);
    for (const line of lines) expect(line).toMatch(/^[A-Za-z][A-Za-z0-9.]*=[A-Za-z0-9._~%-]*$/);
    expect(lines.at(-1)).toBe("end=1");
    expect(lines.filter((line) => line.startsWith("phase="))).toEqual(["phase=restore"]);
    expect(parsePlan(text)).toEqual(plan);
  });

  it("is read by the agent script to exactly the same values, without running anything in them", async () => {
    const plan = hostilePlan();
    const parsed = await parseWithAgent(renderPlan(plan));
    expect(parsed.problem).toBeUndefined();
    expect(parsed.plan).toEqual(flatten(plan));
    expect(existsSync(canary)).toBe(false);
  });

  it("percent-encodes every byte outside the unreserved set and decodes UTF-8 back", () => {
    expect(encodePlanValue("a-b_c.d~e")).toBe("a-b_c.d~e");
    expect(encodePlanValue("$(x) \"'\n%é")).toBe("%24%28x%29%20%22%27%0A%25%C3%A9");
    expect(decodePlanValue("%24%28x%29%20%22%27%0a%25%C3%A9")).toBe("$(x) \"'\n%é");
    expect(() => decodePlanValue("$(x)")).toThrow(/not percent-encoded/);
    expect(() => decodePlanValue("%C3")).toThrow();
  });

  it.each([
    [
      "a raw shell character in a value",
      (text: string) => text.replace("cluster=prod-eu-1", "cluster=prod$(id)"),
    ],
    ["a cut-off plan without its end line", (text: string) => text.replace("end=1\n", "")],
    ["a key that appears twice", (text: string) => text.replace("end=1", "phase=start\nend=1")],
    ["another format version", (text: string) => text.replace("format=1", "format=2")],
    ["an unknown phase", (text: string) => text.replace("phase=restore", "phase=explode")],
    [
      "a number with a leading zero (octal to bash)",
      (text: string) => text.replace("bytes=20512", "bytes=020512"),
    ],
    ["an encoded NUL", (text: string) => text.replace("cluster=prod-eu-1", "cluster=prod%00")],
    [
      "a relative data dir",
      (text: string) => text.replace(/member\.dataDir=[^\n]*/, "member.dataDir=var%2Flib%2Fetcd"),
    ],
    ["a manifest path instead of a file name", (text: string) => text.replace("etcd.yaml", "..%2Fetcd.yaml")],
    ["a line that is not key=value", (text: string) => text.replace("end=1", "restoreTool\nend=1")],
    [
      "a restart manifest that is a path",
      (text: string) => text.replace("kube-scheduler.yaml%2C", "..%2Fkube-scheduler.yaml%2C"),
    ],
    [
      "an empty item in the restart manifests",
      (text: string) => text.replace("kube-scheduler.yaml%2C", "kube-scheduler.yaml%2C%2C"),
    ],
    [
      "a restart manifest with a space (a second word to the shell)",
      (text: string) => text.replace("kube-scheduler.yaml%2C", "kube-scheduler.yaml%20x%2C"),
    ],
    [
      "etcd's manifest among the restart manifests",
      (text: string) => text.replace("kube-scheduler.yaml%2C", "etcd.yaml%2C"),
    ],
    [
      "a restart manifest named twice",
      (text: string) => text.replace("kube-controller-manager.yaml", "kube-scheduler.yaml"),
    ],
    [
      "a readiness URL that is not http(s)",
      (text: string) =>
        text.replace(
          /member\.apiServerReadyUrl=[^\n]*/,
          "member.apiServerReadyUrl=file%3A%2F%2F%2Fetc%2Fpasswd",
        ),
    ],
    [
      "a renewed status URL that is not http(s)",
      (text: string) => text.replace(/^statusUrl=[^\n]*/m, "statusUrl=file%3A%2F%2F%2Fetc%2Fpasswd"),
    ],
    ["an empty renewed plan URL", (text: string) => text.replace(/^planUrl=[^\n]*/m, "planUrl=")],
    [
      "a relative CA file",
      (text: string) => text.replace(/member\.apiServerCaFile=[^\n]*/, "member.apiServerCaFile=ca.crt"),
    ],
  ])("is refused by both readers when it has %s", async (_case, corrupt) => {
    const text = corrupt(renderPlan(basePlan()));
    expect(() => parsePlan(text)).toThrow();
    const parsed = await parseWithAgent(text);
    expect(parsed.plan).toBeUndefined();
    expect(parsed.problem).toMatch(/plan/);
  });

  it("names every phase the state machine can write in a way the agent accepts, and no other", async () => {
    for (const phase of RestorePhases) {
      const parsed = await parseWithAgent(renderPlan({ ...basePlan(), phase }));
      expect(parsed.problem, phase).toBeUndefined();
      expect(parsed.plan?.get("phase")).toBe(phase);
    }
    const unknown = renderPlan(basePlan()).replace("phase=restore", "phase=stop-everything");
    expect((await parseWithAgent(unknown)).problem).toBe("plan phase 'stop-everything' is unknown");
  });

  it("lets etcdctl bump the revision only when the bump is optional, on both sides", async () => {
    const optional: RestorePlan = {
      ...basePlan(),
      restoreTool: "etcdctl",
      etcdutlPath: undefined,
      etcdctlPath: "/usr/bin/etcdctl",
      revisionBumpOptional: true,
    };
    expect(parsePlan(renderPlan(optional))).toEqual(optional);
    expect((await parseWithAgent(renderPlan(optional))).plan).toEqual(flatten(optional));
    const required = renderPlan(optional).replace("revisionBumpOptional=true\n", "");
    expect(() => parsePlan(required)).toThrow(/etcdutl/);
    expect((await parseWithAgent(required)).problem).toMatch(/etcdutl, or make the bump optional/);
  });

  it("ignores keys that a newer writer adds, on both sides", async () => {
    const text = renderPlan(basePlan()).replace("end=1", "futureField=x\nend=1");
    expect(parsePlan(text)).toEqual(basePlan());
    expect((await parseWithAgent(text)).plan).toEqual(flatten(basePlan()));
  });

  it.each([
    [
      "kube-apiserver's manifest among the restart manifests",
      { member: { ...basePlan().member, restartManifests: ["kube-apiserver.yaml"] } },
      /stop and start|stops and starts/,
    ],
    [
      "etcdctl asked to bump the revision",
      { restoreTool: "etcdctl" as const, etcdutlPath: undefined },
      /etcdutl/,
    ],
    ["--mark-compacted without --bump-revision", { bumpRevision: undefined }, /needs --bump-revision/],
    [
      "an optional revision bump without a bump",
      { bumpRevision: undefined, markCompacted: undefined, revisionBumpOptional: true },
      /optional revision bump needs --bump-revision/,
    ],
    ["a restore id that could leave the data dir's folder", { restoreId: "../x" }, /restoreId/],
    [
      "an initial cluster without this member",
      { initialCluster: "cp-2=https://10.0.0.2:2380" },
      /must name this member/,
    ],
    [
      "a snapshot size without a trailer",
      { snapshot: { ...basePlan().snapshot, bytes: 20480 } },
      /trailer|512/,
    ],
  ])("refuses to render a plan with %s", (_case, change, message) => {
    expect(() => renderPlan({ ...basePlan(), ...change } as RestorePlan)).toThrow(message);
  });
});

/**
 * Runs the agent's choice of TLS verification for a readiness URL; returns its curl options, the URL it
 * asks and its note, or its refusal.
 */
async function apiTlsWithAgent(readyUrl: string, caFile = "") {
  const code = `source "$1"
ready_url=$2 api_ca_file=$3
if resolve_api_tls >"$4"; then printf '%s\\n' "\${api_tls[*]:-}" "$api_tls_note" "$api_request_url"; else cat "$4"; exit 3; fi`;
  try {
    const { stdout } = await run(
      "bash",
      ["-c", code, "agent-test", agentScript, readyUrl, caFile, join(scratch, "tls.problem")],
      { encoding: "utf8" },
    );
    const [options, note, url] = stdout.split("\n");
    return { options, note, url };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string };
    if (failure.code === 3) return { problem: (failure.stdout ?? "").trim() };
    throw error;
  }
}

describe("the agent's TLS verification of kube-apiserver's readiness URL", () => {
  // kubeadm's CA, which the agent prefers to skipping verification, must not be on the test machine.
  const kubeadmCa = existsSync("/etc/kubernetes/pki/ca.crt");

  it("uses no TLS options for http and the plan's CA file for https", async () => {
    expect(await apiTlsWithAgent("http://127.0.0.1:8080/readyz")).toEqual({
      options: "",
      note: "",
      url: "http://127.0.0.1:8080/readyz",
    });
    const ca = join(scratch, "ca.crt");
    await writeFile(ca, "-----BEGIN CERTIFICATE-----\n");
    expect(await apiTlsWithAgent("https://10.0.0.1:6443/readyz", ca)).toEqual({
      options: `--cacert ${ca}`,
      note: "",
      url: "https://10.0.0.1:6443/readyz",
    });
  });

  it("verifies a loopback URL's certificate for the name kubernetes, which kubeadm's always has", async () => {
    const ca = join(scratch, "ca.crt");
    await writeFile(ca, "-----BEGIN CERTIFICATE-----\n");
    for (const [readyUrl, host, port, rest] of [
      ["https://127.0.0.1:6443/readyz", "127.0.0.1", "6443", "/readyz"],
      ["https://localhost/readyz?verbose", "localhost", "443", "/readyz?verbose"],
      ["https://[::1]:6443/readyz", "[::1]", "6443", "/readyz"],
    ] as const) {
      expect(await apiTlsWithAgent(readyUrl, ca)).toEqual({
        options: `--cacert ${ca} --connect-to kubernetes:${port}:${host}:${port}`,
        note: `verifying kube-apiserver's certificate for the name kubernetes while connecting to ${host}:${port}`,
        url: `https://kubernetes:${port}${rest}`,
      });
    }
  });

  it("gets `ok` from a local API server whose certificate, like kubeadm's, names kubernetes but no loopback address", async () => {
    const pki = await mkdtemp(join(scratch, "pki-"));
    const path = (name: string) => join(pki, name);
    const openssl = (args: string[]) => run("openssl", args);
    await openssl(
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kubernetes"].concat([
        "-keyout",
        path("ca.key"),
        "-out",
        path("ca.crt"),
      ]),
    );
    await writeFile(
      path("apiserver.ext"),
      "subjectAltName=DNS:kubernetes,DNS:kubernetes.default,IP:10.96.0.1\n",
    );
    await openssl(
      ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver"].concat([
        "-keyout",
        path("apiserver.key"),
        "-out",
        path("apiserver.csr"),
      ]),
    );
    await openssl(
      ["x509", "-req", "-in", path("apiserver.csr"), "-CA", path("ca.crt"), "-CAkey", path("ca.key")].concat([
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        path("apiserver.ext"),
        "-out",
        path("apiserver.crt"),
      ]),
    );
    const server = createHttpsServer(
      { key: await readFile(path("apiserver.key")), cert: await readFile(path("apiserver.crt")) },
      (request, response) => response.end(request.url === "/readyz" ? "ok" : "not found"),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const readyUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`;
      // Asked by its own address, the certificate does not match.
      await expect(
        run("curl", ["--silent", "--fail", "--cacert", path("ca.crt"), readyUrl]),
      ).rejects.toThrow();
      const code = `source "$1"
ready_url=$2 api_ca_file=$3 work_dir=$4
resolve_api_tls && api_ready
printf '%s' "$api_last_answer"`;
      const { stdout } = await run(
        "bash",
        ["-c", code, "agent-test", agentScript, readyUrl, path("ca.crt"), pki],
        {
          encoding: "utf8",
        },
      );
      expect(stdout).toBe("HTTP 200 ok");
    } finally {
      server.close();
    }
  });

  it("refuses a CA file that is not on the node", async () => {
    expect((await apiTlsWithAgent("https://127.0.0.1:6443/readyz", "/nonexistent/ca.crt")).problem).toBe(
      "apiServerCaFile /nonexistent/ca.crt is not a readable file on this node",
    );
  });

  it.skipIf(kubeadmCa)("skips verification without a CA only for a loopback URL, and says so", async () => {
    for (const url of [
      "https://127.0.0.1:6443/readyz",
      "https://localhost:6443/readyz",
      "https://[::1]:6443/readyz",
    ]) {
      const outcome = await apiTlsWithAgent(url);
      expect(outcome.options).toBe("--insecure");
      expect(outcome.note).toMatch(/^TLS NOT VERIFIED for /);
    }
    for (const url of [
      "https://10.0.0.1:6443/readyz",
      "https://127.0.0.1.example.com/readyz",
      "https://localhost@example.com/readyz",
    ]) {
      expect((await apiTlsWithAgent(url)).problem).toMatch(
        /^cannot verify .*: no apiServerCaFile and no \/etc\/kubernetes\/pki\/ca\.crt, and the agent skips TLS verification only for a loopback URL$/,
      );
    }
  });
});

describe("restore agent status", () => {
  const hostileMessage = `sha256 "mismatch" \\ $(touch CANARY) \`x\` \x01\x1f tab\there é 🦀\nsecond line`;
  const hostileLog = [
    'line with "quotes" and \\backslash',
    "control \x02 and \r return",
    "$(touch CANARY)",
    "",
  ];

  it("is JSON that parseStatus reads back to the very strings the script was given", async () => {
    const text = await statusFromAgent({ message: hostileMessage, logLines: hostileLog });
    const status = parseStatus(text);
    expect(status).toMatchObject({
      restoreId: "r-1",
      member: "cp-1",
      phase: "restore",
      state: "failed",
      message: hostileMessage,
      freeBytes: 123,
      oldDataDir: "/var/lib/etcd.pre-restore-r-1",
      toolVersion: "etcdutl 3.6.5",
      log: hostileLog,
    });
    expect(Date.parse(status.updatedAt)).not.toBeNaN();
  });

  it("withholds a presigned URL that a message carries", async () => {
    const statusUrl = "http://127.0.0.1:9/b/status.json?X-Amz-Signature=deadbeef";
    const text = await statusFromAgent({ message: `PUT ${statusUrl} failed`, logLines: [], statusUrl });
    expect(text).not.toContain("deadbeef");
    expect(parseStatus(text).message).toBe("PUT <presigned URL> failed");
  });

  it("switches to a renewed URL and still withholds the one it replaced", async () => {
    const launch = "http://127.0.0.1:9/b/plan.txt?X-Amz-Signature=launched";
    const renewed = "http://127.0.0.1:9/b/plan.txt?X-Amz-Signature=renewed";
    const code = `source "$1"
plan_url=$2
switch_url plan_url "$3" && echo "switched"
switch_url plan_url "$3" || echo "unchanged"
[[ $plan_url == "$3" ]] && echo "now renewed"
redact "old $2 new $3"`;
    const { stdout } = await run("bash", ["-c", code, "agent-test", agentScript, launch, renewed], {
      encoding: "utf8",
    });
    expect(stdout).toBe("switched\nunchanged\nnow renewed\nold <presigned URL> new <presigned URL>");
  });

  it.each([
    ["text that is not JSON", "{not json"],
    [
      "a status without a state",
      JSON.stringify({
        restoreId: "r",
        member: "m",
        phase: "stop",
        message: "",
        updatedAt: "2026-11-24T00:00:00Z",
        log: [],
      }),
    ],
    [
      "an unknown state",
      JSON.stringify({
        restoreId: "r",
        member: "m",
        phase: "stop",
        state: "exploded",
        message: "",
        updatedAt: "2026-11-24T00:00:00Z",
        log: [],
      }),
    ],
    [
      "a log that is not a list",
      JSON.stringify({
        restoreId: "r",
        member: "m",
        phase: "stop",
        state: "done",
        message: "",
        updatedAt: "2026-11-24T00:00:00Z",
        log: "x",
      }),
    ],
  ])("refuses %s", (_case, text) => {
    expect(() => parseStatus(text)).toThrow(/status/);
  });

  it("says a phase is complete only for its own restore, phase and a done state", () => {
    const status: RestoreAgentStatus = {
      restoreId: "r-1",
      member: "cp-1",
      phase: "restore",
      state: "done",
      message: "restored",
      updatedAt: "2026-11-24T00:00:00Z",
      log: [],
    };
    expect(parseStatus(renderStatus(status))).toEqual(status);
    expect(hasCompletedPhase(status, "r-1", "restore")).toBe(true);
    expect(hasCompletedPhase(status, "r-2", "restore")).toBe(false);
    expect(hasCompletedPhase(status, "r-1", "start")).toBe(false);
    expect(hasCompletedPhase({ ...status, state: "working" }, "r-1", "restore")).toBe(false);
  });

  it("counts an agent that vanished after reporting start-apiserver done as finished, as the kubelet may kill it", () => {
    const status: RestoreAgentStatus = {
      restoreId: "r-1",
      member: "cp-1",
      phase: "start-apiserver",
      state: "done",
      message: "kube-apiserver started",
      updatedAt: "2026-11-24T01:02:03Z",
      log: [],
    };
    expect(hasCompletedPhase(status, "r-1", "finish")).toBe(true);
    expect(hasCompletedPhase({ ...status, phase: "finish" }, "r-1", "finish")).toBe(true);
    expect(hasCompletedPhase({ ...status, state: "working" }, "r-1", "finish")).toBe(false);
    expect(hasCompletedPhase({ ...status, phase: "start" }, "r-1", "finish")).toBe(false);
    // Only finish: the start-apiserver report does not stand for a rollback or an abort.
    expect(hasCompletedPhase(status, "r-1", "rollback")).toBe(false);
    expect(hasCompletedPhase(status, "r-1", "abort")).toBe(false);
  });
});

/** etcd's static-pod manifest as kubeadm writes it (abridged), with the flags given. */
function kubeadmEtcdManifest(flags: string[]): string {
  return `apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://10.0.0.1:2379
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
${flags.map((flag) => `    - ${flag}`).join("\n")}
    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
    - --peer-key-file=/etc/kubernetes/pki/etcd/peer.key
    - --peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    livenessProbe:
      httpGet:
        host: 127.0.0.1
        path: /livez
        port: 2381
        scheme: HTTP
`;
}

const kubeadmTlsFlags = [
  "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
  "--key-file=/etc/kubernetes/pki/etcd/server.key",
  "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
];

/** Runs the agent's choice of etcd health URL for a member whose manifest is `manifest` (parked or not). */
async function etcdHealthWithAgent(options: {
  manifest?: string;
  parked?: boolean;
  healthUrl?: string;
  clientUrl?: string;
}) {
  const kubeDir = await mkdtemp(join(scratch, "kube-"));
  const manifestDir = join(kubeDir, "manifests");
  const parkedDir = join(kubeDir, "manifests.parked");
  await mkdir(manifestDir);
  await mkdir(parkedDir);
  if (options.manifest !== undefined) {
    await writeFile(join(options.parked ? parkedDir : manifestDir, "etcd.yaml"), options.manifest);
  }
  const code = `source "$1"
manifest_dir=$2 parked_dir=$3 etcd_manifest=etcd.yaml client_url=$4
[[ -n $5 ]] && plan[member.healthUrl]=$5
resolve_etcd_health
printf '%s\\n' "$health_url" "\${health_tls[*]:-}" "$health_source"`;
  const { stdout } = await run(
    "bash",
    [
      "-c",
      code,
      "agent-test",
      agentScript,
      manifestDir,
      parkedDir,
      options.clientUrl ?? "https://10.0.0.1:2379",
      options.healthUrl ?? "",
    ],
    { encoding: "utf8" },
  );
  const [url, tls, source] = stdout.split("\n");
  return { url, tls, source };
}

describe("the agent's choice of where to ask etcd's health", () => {
  it("uses kubeadm's plain-http metrics listener, which needs no client certificate", async () => {
    const manifest = kubeadmEtcdManifest([
      "--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.1:2379",
      "--listen-metrics-urls=http://127.0.0.1:2381",
      ...kubeadmTlsFlags,
    ]);
    for (const parked of [false, true]) {
      expect(await etcdHealthWithAgent({ manifest, parked })).toEqual({
        url: "http://127.0.0.1:2381/health",
        tls: "",
        source: "etcd's --listen-metrics-urls, which needs no TLS",
      });
    }
  });

  it("takes the first http URL of several metrics URLs, passing over https ones", async () => {
    const manifest = kubeadmEtcdManifest([
      "--listen-metrics-urls=https://10.0.0.1:2381,http://127.0.0.1:2382/,http://10.0.0.1:2383",
      ...kubeadmTlsFlags,
    ]);
    expect((await etcdHealthWithAgent({ manifest })).url).toBe("http://127.0.0.1:2382/health");
  });

  it("without an http metrics URL, asks the client URL with etcd's own CA, certificate and key", async () => {
    const manifest = kubeadmEtcdManifest(kubeadmTlsFlags);
    expect(await etcdHealthWithAgent({ manifest })).toEqual({
      url: "https://10.0.0.1:2379/health",
      tls: "--cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/server.crt --key /etc/kubernetes/pki/etcd/server.key",
      source: "the plan's clientUrl, with etcd's own --trusted-ca-file, --cert-file and --key-file",
    });
  });

  it("reads the flags from a JSON manifest too, as the local stand-in writes them", async () => {
    const manifest = JSON.stringify(
      {
        spec: { containers: [{ command: ["etcd"], args: ["--listen-metrics-urls=http://127.0.0.1:2381"] }] },
      },
      null,
      2,
    );
    expect((await etcdHealthWithAgent({ manifest })).url).toBe("http://127.0.0.1:2381/health");
  });

  it("lets the plan's healthUrl override the manifest", async () => {
    const manifest = kubeadmEtcdManifest(["--listen-metrics-urls=http://127.0.0.1:2381", ...kubeadmTlsFlags]);
    expect(await etcdHealthWithAgent({ manifest, healthUrl: "http://127.0.0.1:9999/health" })).toEqual({
      url: "http://127.0.0.1:9999/health",
      tls: "",
      source: "the plan's healthUrl",
    });
  });

  it("falls back to <clientUrl>/health as it is without a manifest to read", async () => {
    expect(await etcdHealthWithAgent({ clientUrl: "http://127.0.0.1:2379/" })).toEqual({
      url: "http://127.0.0.1:2379/health",
      tls: "",
      source: "the plan's clientUrl",
    });
  });
});
