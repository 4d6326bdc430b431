// Bundles an entry point as infra/lambda-step-function.ts bundles a handler: esbuild, ESM, node22,
// minified, everything inside except the native CRC32C module (installed beside the bundle on AWS).
import { mkdir, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { crc32cNativeModule, esmRequireBanner } from "../infra/native-modules.js";

const projectRoot = join(import.meta.dirname, "..");

/**
 * Where bundles go: outside the tree, because Biome lints every .mjs under the project root. A
 * node_modules link beside them lets the externals (`@node-rs/crc32`, `@aws-sdk/*`) resolve as they
 * would from the project.
 */
export async function prepareBuildDir(): Promise<string> {
  const buildDir = join(tmpdir(), "etcd-backup-bench-build");
  await mkdir(buildDir, { recursive: true });
  await symlink(join(projectRoot, "node_modules"), join(buildDir, "node_modules"), "dir").catch(
    (error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
    },
  );
  return buildDir;
}

export interface BundleOptions {
  /** Leave `@aws-sdk/*` and `@smithy/*` to the runtime (Node 22 Lambda ships SDK v3) instead of bundling them. */
  externalSdk?: boolean;
}

/** Bundles each entry point into `outdir/<name>.mjs` (one esbuild run shares the parsing between them). */
export async function bundleLikeLambda(entryPoints: string[], outdir: string, options: BundleOptions = {}) {
  await build({
    entryPoints,
    outdir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    target: "node22",
    format: "esm",
    mainFields: ["module", "main"],
    minify: true,
    sourcemap: true,
    sourcesContent: false,
    banner: { js: esmRequireBanner },
    external: options.externalSdk ? [crc32cNativeModule, "@aws-sdk/*", "@smithy/*"] : [crc32cNativeModule],
    logLevel: "error",
  });
}
