// The one native dependency, @node-rs/crc32, ships a prebuilt binary per platform as an optional package.
// esbuild cannot bundle a .node file, and bundling happens on the build machine (any platform), so the
// bundle gets the linux-arm64-gnu build installed beside it explicitly. Where it is missing anyway,
// lambdas/core/checksum/crc32c.ts falls back to its portable implementation.
import { readFileSync } from "node:fs";
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
 * Command hooks that install `moduleName` with its Linux arm64 (glibc) binary into the bundle's
 * node_modules after esbuild ran; npm filters the optional platform packages by --os/--cpu/--libc.
 */
export function linuxArm64NativeModuleHooks(projectRoot: string, moduleName: string): ICommandHooks {
  const spec = `${moduleName}@${installedVersion(projectRoot, moduleName)}`;
  return {
    beforeBundling: () => [],
    beforeInstall: () => [],
    afterBundling: (_inputDir, outputDir) => [
      [
        "npm install",
        `--prefix ${shellQuote(outputDir)}`,
        "--no-save --no-package-lock --no-audit --no-fund --prefer-offline --loglevel=error",
        "--os=linux --cpu=arm64 --libc=glibc",
        shellQuote(spec),
      ].join(" "),
      `rm -f ${shellQuote(join(outputDir, "node_modules", ".package-lock.json"))}`,
    ],
  };
}
