// The etcd this machine has, found once: the local stack runs it as its static pods, names its version in
// their manifests, and restores with the tool its release has: etcdutl from 3.5 on (3.6 removed
// `etcdctl snapshot restore`), etcdctl on 3.4.
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { delimiter, dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { InvalidInputError } from "../../lambdas/core/errors.js";

const run = promisify(execFile);

export const etcdInstallHint =
  "install etcd first — Debian/Ubuntu: sudo apt-get install etcd-server etcd-client; macOS: brew install etcd";

export type RestoreToolName = "etcdutl" | "etcdctl";

/** What each tool printed for its version (`etcd --version`, `etcdctl version`, `etcdutl version`); undefined when it is not installed. */
export interface EtcdVersionTexts {
  etcd: string | undefined;
  etcdctl: string | undefined;
  etcdutl: string | undefined;
}

export interface RestoreToolChoice {
  /** etcd's own version, e.g. 3.4.23: the version its static-pod manifests name. */
  etcdVersion: string;
  restoreTool: RestoreToolName;
  /** The restore tool's own version, which the restore agent reads again at prepare. */
  restoreToolVersion: string;
}

export interface InstalledEtcd extends RestoreToolChoice {
  etcdBinary: string;
  etcdctlBinary: string;
  /** The absolute path of the chosen restore tool, which the local target names as its toolPath. */
  restoreToolPath: string;
}

/**
 * Chooses the restore tool from what the tools printed: etcdutl wherever it is installed (3.5+, the only
 * one with `snapshot restore` in 3.6, and the one with --bump-revision); otherwise etcdctl, which restores
 * up to 3.5. etcd and etcdctl are needed either way (the stack runs etcd, its helpers run etcdctl).
 */
export function chooseRestoreTool(texts: EtcdVersionTexts): RestoreToolChoice {
  const missing = (["etcd", "etcdctl"] as const).filter((tool) => texts[tool] === undefined);
  if (missing.length > 0)
    throw new InvalidInputError(`${missing.join(" and ")} not found: ${etcdInstallHint}`);
  const etcdVersion = readVersion("etcd --version", texts.etcd as string);
  if (texts.etcdutl !== undefined) {
    return {
      etcdVersion,
      restoreTool: "etcdutl",
      restoreToolVersion: readVersion("etcdutl version", texts.etcdutl),
    };
  }
  const etcdctlVersion = readVersion("etcdctl version", texts.etcdctl as string);
  const [major = 0, minor = 0] = etcdctlVersion.split(".").map(Number);
  if (major > 3 || (major === 3 && minor >= 6)) {
    throw new InvalidInputError(
      `etcdctl ${etcdctlVersion} has no snapshot restore (etcd 3.6 moved it to etcdutl), and etcdutl is not on PATH: install etcdutl from etcd ${etcdVersion}'s release beside etcd`,
    );
  }
  return { etcdVersion, restoreTool: "etcdctl", restoreToolVersion: etcdctlVersion };
}

// The first `version: X.Y.Z` line, as the restore agent reads it: "etcd Version: 3.4.23",
// "etcdctl version: 3.6.1", "etcdutl version: 3.5.17".
function readVersion(command: string, text: string): string {
  const match = /version:\s*v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)/i.exec(text);
  if (!match?.[1]) {
    throw new InvalidInputError(`cannot read a version from \`${command}\`: ${text.trim().slice(0, 200)}`);
  }
  return match[1];
}

let detected: Promise<InstalledEtcd> | undefined;

/** Finds etcd (ETCD_BINARY, as the test harness reads it, else PATH), etcdctl and etcdutl: once per process. */
export function detectInstalledEtcd(): Promise<InstalledEtcd> {
  detected ??= detect();
  return detected;
}

async function detect(): Promise<InstalledEtcd> {
  const chosenEtcd = process.env.ETCD_BINARY;
  const etcdBinary = chosenEtcd?.includes("/")
    ? await findExecutable(chosenEtcd)
    : await findOnPath(chosenEtcd || "etcd");
  if (chosenEtcd && !etcdBinary) {
    throw new InvalidInputError(`ETCD_BINARY names ${chosenEtcd}, which is not an executable file`);
  }
  const [etcdctlBinary, etcdutlBinary] = await Promise.all([
    findReleaseTool(etcdBinary, "etcdctl"),
    findReleaseTool(etcdBinary, "etcdutl"),
  ]);
  const [etcd, etcdctl, etcdutl] = await Promise.all([
    versionText(etcdBinary, "--version"),
    versionText(etcdctlBinary, "version"),
    versionText(etcdutlBinary, "version"),
  ]);
  const choice = chooseRestoreTool({ etcd, etcdctl, etcdutl });
  return {
    ...choice,
    etcdBinary: etcdBinary as string,
    etcdctlBinary: etcdctlBinary as string,
    restoreToolPath: (choice.restoreTool === "etcdutl" ? etcdutlBinary : etcdctlBinary) as string,
  };
}

/**
 * A tool of etcd's own release: beside the etcd binary first (a release unpacked in a directory of its
 * own, ETCD_BINARY naming another etcd than PATH's), else on PATH.
 */
export async function findReleaseTool(
  etcdBinary: string | undefined,
  name: string,
): Promise<string | undefined> {
  const beside = etcdBinary ? await findExecutable(join(dirname(etcdBinary), name)) : undefined;
  return beside ?? findOnPath(name);
}

async function findOnPath(name: string): Promise<string | undefined> {
  for (const directory of (process.env.PATH ?? "").split(delimiter)) {
    if (!directory) continue;
    const found = await findExecutable(resolve(directory, name));
    if (found) return found;
  }
  return undefined;
}

async function findExecutable(path: string): Promise<string | undefined> {
  const absolute = resolve(path);
  try {
    if (!(await stat(absolute)).isFile()) return undefined;
    await access(absolute, constants.X_OK);
    return absolute;
  } catch {
    return undefined;
  }
}

async function versionText(binary: string | undefined, argument: string): Promise<string | undefined> {
  if (!binary) return undefined;
  try {
    const { stdout, stderr } = await run(binary, [argument], {
      env: { ...process.env, ETCDCTL_API: "3" },
      timeout: 10_000,
    });
    return `${stdout}\n${stderr}`;
  } catch (error) {
    throw new InvalidInputError(`${binary} ${argument} failed: ${(error as Error).message.slice(0, 300)}`);
  }
}
