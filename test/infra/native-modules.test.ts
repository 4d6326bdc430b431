// The bundling hook that adds the linux-arm64 build of @node-rs/crc32, run by bash as CDK runs it, against
// an npm that cannot reach any registry: synth must go on (the portable CRC-32C takes over) and say why once.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { nativeModuleInstallCommand } from "../../infra/native-modules.js";

const spec = "@node-rs/crc32@1.10.8";

function runOffline(command: string) {
  const emptyCache = mkdtempSync(join(tmpdir(), "npm-cache-"));
  return spawnSync("bash", ["-c", command], {
    encoding: "utf8",
    env: {
      ...process.env,
      // Port 9 (discard) refuses connections at once: the same failure as no network, without the wait.
      npm_config_registry: "http://127.0.0.1:9/",
      npm_config_cache: emptyCache,
      npm_config_fetch_retries: "0",
    },
  });
}

describe("nativeModuleInstallCommand", () => {
  it("succeeds without the native build when npm cannot fetch it, warning once with npm's reason", () => {
    const work = mkdtempSync(join(tmpdir(), "native-module-"));
    const marker = join(work, "install-failed");
    const first = join(work, "bundle-1");
    const second = join(work, "bundle-2");

    const firstRun = runOffline(nativeModuleInstallCommand(spec, first, marker));
    expect(firstRun.status).toBe(0);
    const warnings = firstRun.stderr.split("\n").filter((line) => line.includes("etcd-backup: warning"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`could not install the linux-arm64 build of ${spec}`);
    expect(warnings[0]).toContain("ECONNREFUSED");
    expect(warnings[0]).toContain("portable CRC-32C");
    expect(existsSync(join(first, "node_modules", "@node-rs", "crc32-linux-arm64-gnu"))).toBe(false);
    expect(existsSync(marker)).toBe(true);

    // The next bundle of the same synth neither waits for npm again nor repeats the warning.
    const secondRun = runOffline(nativeModuleInstallCommand(spec, second, marker));
    expect(secondRun.status).toBe(0);
    expect(secondRun.stderr).not.toContain("etcd-backup: warning");
  });

  it("quotes the bundle directory for the shell", () => {
    const command = nativeModuleInstallCommand(spec, "/tmp/it's here", "/tmp/marker");
    expect(command).toContain(`--prefix '/tmp/it'\\''s here'`);
  });
});
