// Starts a real etcd (Debian's /usr/bin/etcd) of one or three members on free loopback ports,
// optionally with mutual TLS on the client port, and always stops it.
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { findFreePort } from "./free-port.js";
import { makeTempDir } from "./temp-dir.js";
import { createTestCertificates, type TestCertificates } from "./test-certificates.js";

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  process: ChildProcess | undefined;
}

export interface EtcdClusterOptions {
  members?: 1 | 3;
  /** Serve clients over mutual TLS, with certificates from a throw-away CA. */
  tls?: boolean;
  quotaBackendBytes?: number;
  /** Reuse data directories from an earlier run instead of a new temporary directory. */
  baseDir?: string;
}

export interface EtcdCluster {
  members: EtcdMember[];
  endpoints: string[];
  certificates: TestCertificates | undefined;
  /** Client TLS options for Node clients, when the cluster uses TLS. */
  clientTls: { ca: Buffer; cert: Buffer; key: Buffer } | undefined;
  /** Arguments that make etcdctl reach this cluster (endpoint of the first member). */
  etcdctlArgs(memberIndex?: number): string[];
  killMember(memberIndex: number): void;
  startMember(memberIndex: number): Promise<void>;
  stop(): Promise<void>;
}

const etcdBinary = process.env.ETCD_BINARY ?? "/usr/bin/etcd";

export async function startEtcdCluster(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const memberCount = options.members ?? 1;
  const temp = options.baseDir === undefined ? await makeTempDir("etcd") : undefined;
  const baseDir = options.baseDir ?? (temp as { path: string }).path;
  const certificates = options.tls
    ? await createTestCertificates(await ensureDir(join(baseDir, "pki")))
    : undefined;
  const scheme = certificates ? "https" : "http";
  const members: EtcdMember[] = [];
  for (let index = 0; index < memberCount; index++) {
    members.push({
      name: `member-${index}`,
      clientUrl: `${scheme}://127.0.0.1:${await findFreePort()}`,
      peerUrl: `http://127.0.0.1:${await findFreePort()}`,
      dataDir: join(baseDir, `member-${index}.etcd`),
      process: undefined,
    });
  }
  const initialCluster = members.map((member) => `${member.name}=${member.peerUrl}`).join(",");
  const clientTls = certificates
    ? {
        ca: readFileSync(certificates.caFile),
        cert: readFileSync(certificates.clientCertFile),
        key: readFileSync(certificates.clientKeyFile),
      }
    : undefined;

  const argumentsFor = (member: EtcdMember): string[] => {
    const args = [
      `--name=${member.name}`,
      `--data-dir=${member.dataDir}`,
      `--listen-client-urls=${member.clientUrl}`,
      `--advertise-client-urls=${member.clientUrl}`,
      `--listen-peer-urls=${member.peerUrl}`,
      `--initial-advertise-peer-urls=${member.peerUrl}`,
      `--initial-cluster=${initialCluster}`,
      "--initial-cluster-state=new",
      "--initial-cluster-token=etcd-backup-test",
      "--logger=zap",
      "--log-level=warn",
      "--heartbeat-interval=50",
      "--election-timeout=500",
    ];
    if (options.quotaBackendBytes) args.push(`--quota-backend-bytes=${options.quotaBackendBytes}`);
    if (certificates) {
      args.push(
        `--trusted-ca-file=${certificates.caFile}`,
        `--cert-file=${certificates.serverCertFile}`,
        `--key-file=${certificates.serverKeyFile}`,
        "--client-cert-auth",
      );
    }
    return args;
  };

  const startMember = async (index: number): Promise<void> => {
    const member = members[index];
    if (!member) throw new Error(`no member ${index}`);
    const log = createWriteStream(join(baseDir, `${member.name}.log`), { flags: "a" });
    const child = spawn(etcdBinary, argumentsFor(member), { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    member.process = child;
  };

  const killMember = (index: number): void => {
    const member = members[index];
    member?.process?.kill("SIGKILL");
    if (member) member.process = undefined;
  };

  const stop = async (): Promise<void> => {
    await Promise.all(
      members.map(async (member) => {
        const child = member.process;
        if (!child || child.exitCode !== null) return;
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await Promise.race([exited, sleep(5000)]);
        if (child.exitCode === null) child.kill("SIGKILL");
        member.process = undefined;
      }),
    );
    await temp?.remove();
  };

  try {
    for (let index = 0; index < members.length; index++) await startMember(index);
    await Promise.all(members.map((member) => waitUntilHealthy(member, clientTls)));
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    members,
    endpoints: members.map((member) => member.clientUrl),
    certificates,
    clientTls,
    etcdctlArgs: (memberIndex = 0) => {
      const args = [`--endpoints=${members[memberIndex]?.clientUrl}`];
      if (certificates) {
        args.push(
          `--cacert=${certificates.caFile}`,
          `--cert=${certificates.clientCertFile}`,
          `--key=${certificates.clientKeyFile}`,
        );
      }
      return args;
    },
    killMember,
    startMember: async (index) => {
      await startMember(index);
      const member = members[index];
      if (member) await waitUntilHealthy(member, clientTls);
    },
    stop,
  };
}

async function ensureDir(path: string): Promise<string> {
  await mkdir(path, { recursive: true });
  return path;
}

async function waitUntilHealthy(
  member: EtcdMember,
  tls: { ca: Buffer; cert: Buffer; key: Buffer } | undefined,
): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (member.process && member.process.exitCode !== null) {
      throw new Error(
        `etcd ${member.name} exited with code ${member.process.exitCode} (see ${member.dataDir}.log)`,
      );
    }
    if (await isHealthy(member.clientUrl, tls)) return;
    await sleep(100);
  }
  throw new Error(`etcd ${member.name} at ${member.clientUrl} did not become healthy within 30 s`);
}

async function isHealthy(clientUrl: string, tls: { ca: Buffer; cert: Buffer; key: Buffer } | undefined) {
  const url = `${clientUrl}/health`;
  try {
    if (!tls) {
      const response = await fetch(url);
      return response.ok && ((await response.json()) as { health?: string }).health === "true";
    }
    return await new Promise<boolean>((resolve) => {
      const req = httpsRequest(url, { ...tls, timeout: 1000 }, (res) => {
        let body = "";
        res.on("data", (chunk) => {
          body += chunk;
        });
        res.on("end", () => resolve(res.statusCode === 200 && body.includes('"health":"true"')));
      });
      req.on("error", () => resolve(false));
      req.on("timeout", () => req.destroy());
      req.end();
    });
  } catch {
    return false;
  }
}
