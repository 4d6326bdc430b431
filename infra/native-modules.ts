// The one native dependency, @node-rs/crc32, ships a prebuilt binary per platform as an optional package.
// esbuild cannot bundle a .node file, and bundling happens on the build machine (any platform), so the
// bundle gets the linux-arm64-gnu build installed beside it explicitly. Where it is missing anyway (the
// install failed, e.g. offline), lambdas/core/checksum/crc32c.ts falls back to its portable implementation.
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ICommandHooks } from "aws-cdk-lib/aws-lambda-nodejs";

export const crc32cNativeModule = "@node-rs/crc32";

/**
 * Prepended to every handler bundle (and the bench's, which mirror them): CommonJS dependencies bundled
 * into an ES module still call require() for Node built-ins.
 */
export const esmRequireBanner =
  "import { createRequire as __etcdBackupCreateRequire } from 'node:module'; const require = __etcdBackupCreateRequire(import.meta.url);";

/** The installed version, so the bundle carries exactly what the tests ran against. */
export function installedVersion(projectRoot: string, moduleName: string): string {
  const manifest = JSON.parse(
    readFileSync(join(projectRoot, "node_modules", moduleName, "package.json"), "utf8"),
  );
  return (manifest as { version: string }).version;
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * Created by the first bundle whose install failed in this synth: the next bundles skip the install (an
 * offline npm would only wait out its retries again) and the warning is printed once.
 */
let installFailedMarker: string | undefined;

function installFailedMarkerPath(): string {
  if (!installFailedMarker) {
    const marker = join(tmpdir(), `etcd-backup-native-install-failed-${process.pid}`);
    process.once("exit", () => rmSync(marker, { force: true }));
    installFailedMarker = marker;
  }
  return installFailedMarker;
}

/**
 * Command hooks that install `moduleName` with its Linux arm64 (glibc) binary into the bundle's
 * node_modules after esbuild ran; npm filters the optional platform packages by --os/--cpu/--libc.
 * The install failing does not fail the synth: the bundle ships without the binary and checksums with
 * the portable fallback, and one warning on stderr says why.
 */
export function linuxArm64NativeModuleHooks(projectRoot: string, moduleName: string): ICommandHooks {
  const spec = `${moduleName}@${installedVersion(projectRoot, moduleName)}`;
  return {
    beforeBundling: () => [],
    beforeInstall: () => [],
    afterBundling: (_inputDir, outputDir) => [
      nativeModuleInstallCommand(spec, outputDir, installFailedMarkerPath()),
    ],
  };
}

/**
 * One bash command: unless `failedMarker` exists, install `spec` for linux-arm64 into `outputDir`; on
 * failure print one warning with npm's reason and create `failedMarker`. It always exits 0.
 */
export function nativeModuleInstallCommand(spec: string, outputDir: string, failedMarker: string): string {
  const install = [
    "npm install",
    `--prefix ${shellQuote(outputDir)}`,
    "--no-save --no-package-lock --no-audit --no-fund --prefer-offline --loglevel=error",
    "--os=linux --cpu=arm64 --libc=glibc",
    shellQuote(spec),
  ].join(" ");
  // npm's first error line that is not one of its bare code/syscall/errno lines says what went wrong.
  const reason = `$(sed -n -E 's/^npm (error|ERR!) //p' "$log" | grep -v -E '^(code|syscall|errno) ' | head -n 1)`;
  const warning =
    `etcd-backup: warning: could not install the linux-arm64 build of ${spec} (\${reason:-npm install failed}); ` +
    "the checksumming functions fall back to the portable CRC-32C (slower); synthesize with registry access to ship the native build";
  return [
    `if [ ! -e ${shellQuote(failedMarker)} ]; then`,
    "log=$(mktemp);",
    `if ! ${install} 2>"$log"; then reason=${reason};`,
    `echo "${warning}" >&2;`,
    `: > ${shellQuote(failedMarker)};`,
    "fi;",
    `rm -f "$log" ${shellQuote(join(outputDir, "node_modules", ".package-lock.json"))};`,
    "fi",
  ].join(" ");
}
