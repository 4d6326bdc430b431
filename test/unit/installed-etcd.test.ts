// The local stack's restore tool, chosen from what this machine's etcd tools print: etcdutl wherever it is
// installed, etcdctl up to 3.5, and a refusal that says what to install otherwise.
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { chooseRestoreTool, findReleaseTool } from "../../cli/local/installed-etcd.js";
import { InvalidInputError } from "../../lambdas/core/errors.js";
import { makeTempDir } from "../support/temp-dir.js";

/** What each release's tools print for their version (Debian's 3.4.23; etcd's release builds otherwise). */
const printed = {
  etcd: (version: string) =>
    `etcd Version: ${version}\nGit SHA: Not provided\nGo Version: go1.19.8\nGo OS/Arch: linux/amd64\n`,
  etcdctl: (version: string) =>
    `etcdctl version: ${version}\nAPI version: ${version.split(".", 2).join(".")}\n`,
  etcdutl: (version: string) =>
    `etcdutl version: ${version}\nAPI version: ${version.split(".", 2).join(".")}\n`,
};

describe("the local stack's restore tool", () => {
  it("is etcdctl for Debian's etcd 3.4.23, which has no etcdutl, and names etcd's version", () => {
    expect(
      chooseRestoreTool({
        etcd: printed.etcd("3.4.23"),
        etcdctl: printed.etcdctl("3.4.23"),
        etcdutl: undefined,
      }),
    ).toEqual({ etcdVersion: "3.4.23", restoreTool: "etcdctl", restoreToolVersion: "3.4.23" });
  });

  it("is etcdutl for etcd 3.6, whose etcdctl has no snapshot restore", () => {
    expect(
      chooseRestoreTool({
        etcd: printed.etcd("3.6.4"),
        etcdctl: printed.etcdctl("3.6.4"),
        etcdutl: printed.etcdutl("3.6.4"),
      }),
    ).toEqual({ etcdVersion: "3.6.4", restoreTool: "etcdutl", restoreToolVersion: "3.6.4" });
  });

  it("is etcdutl for etcd 3.5 where it is installed, though its etcdctl still restores", () => {
    expect(
      chooseRestoreTool({
        etcd: printed.etcd("3.5.17"),
        etcdctl: printed.etcdctl("3.5.17"),
        etcdutl: printed.etcdutl("3.5.17"),
      }),
    ).toMatchObject({ etcdVersion: "3.5.17", restoreTool: "etcdutl" });
  });

  it("is etcdctl for etcd 3.5 without etcdutl: its snapshot restore is deprecated, not gone", () => {
    expect(
      chooseRestoreTool({
        etcd: printed.etcd("3.5.17"),
        etcdctl: printed.etcdctl("3.5.17"),
        etcdutl: undefined,
      }),
    ).toEqual({ etcdVersion: "3.5.17", restoreTool: "etcdctl", restoreToolVersion: "3.5.17" });
  });

  it("refuses etcdctl 3.6 without etcdutl, naming etcdutl and the release to take it from", () => {
    const choose = () =>
      chooseRestoreTool({
        etcd: printed.etcd("3.6.4"),
        etcdctl: printed.etcdctl("3.6.4"),
        etcdutl: undefined,
      });
    expect(choose).toThrow(InvalidInputError);
    expect(choose).toThrow(
      /etcdctl 3\.6\.4 has no snapshot restore.*install etcdutl from etcd 3\.6\.4's release/,
    );
  });

  it("keeps a pre-release suffix, which the manifests' image tag carries", () => {
    expect(
      chooseRestoreTool({
        etcd: printed.etcd("3.6.0-rc.5"),
        etcdctl: printed.etcdctl("3.6.0-rc.5"),
        etcdutl: printed.etcdutl("3.6.0-rc.5"),
      }),
    ).toMatchObject({ etcdVersion: "3.6.0-rc.5", restoreToolVersion: "3.6.0-rc.5" });
  });

  it("names what is missing and how to install it when etcd or etcdctl is not found", () => {
    expect(() => chooseRestoreTool({ etcd: undefined, etcdctl: undefined, etcdutl: undefined })).toThrow(
      /^etcd and etcdctl not found: install etcd first — Debian\/Ubuntu: sudo apt-get install etcd-server etcd-client/,
    );
    expect(() =>
      chooseRestoreTool({
        etcd: printed.etcd("3.6.4"),
        etcdctl: undefined,
        etcdutl: printed.etcdutl("3.6.4"),
      }),
    ).toThrow(/^etcdctl not found/);
  });

  it("refuses version text it cannot read, quoting it", () => {
    expect(() =>
      chooseRestoreTool({
        etcd: "etcd: unknown flag\n",
        etcdctl: printed.etcdctl("3.4.23"),
        etcdutl: undefined,
      }),
    ).toThrow("cannot read a version from `etcd --version`: etcd: unknown flag");
  });
});

describe("the tools of etcd's release", () => {
  it("are taken from beside the etcd binary first, then from PATH", async () => {
    const work = await makeTempDir("etcd-release-");
    try {
      const release = join(work.path, "etcd-v3.6.1-linux-amd64");
      await mkdir(release);
      for (const name of ["etcd", "etcdutl"]) {
        await writeFile(join(release, name), "#!/bin/sh\n", { mode: 0o755 });
      }
      expect(await findReleaseTool(join(release, "etcd"), "etcdutl")).toBe(join(release, "etcdutl"));
      // Not in the release's directory: PATH's, as for an etcd installed by a package.
      const onPath = (await promisify(execFile)("bash", ["-c", "command -v etcdctl"])).stdout.trim();
      expect(await findReleaseTool(join(release, "etcd"), "etcdctl")).toBe(onPath);
    } finally {
      await work.remove();
    }
  });
});
