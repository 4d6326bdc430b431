// What `etcd-backup <command> --help` says about required options, and how leaving one out is reported.
import { describe, expect, it } from "vitest";
import { ExitCodes } from "../../cli/exit-codes.js";
import { withOptionSpellings } from "../../cli/main.js";
import { runCliInProcess as cli } from "../support/cli-in-process.js";

/** The help's line for an option, with the description's wrapped continuation lines joined to it. */
function optionEntry(help: string, flags: string): string {
  const lines = help.split("\n");
  const start = lines.findIndex((line) => line.trimStart().startsWith(`${flags} `));
  if (start < 0) throw new Error(`no ${flags} in:\n${help}`);
  const continued = lines.slice(start + 1).findIndex((line) => !/^ {10,}\S/.test(line));
  const end = continued < 0 ? lines.length : start + 1 + continued;
  return lines
    .slice(start, end)
    .map((line) => line.trim())
    .join(" ");
}

describe("required options", () => {
  it.each([
    ["snapshot", ["--to <destination>"], ["--endpoints <urls>", "--cluster <name>"]],
    ["restore", ["--cluster <name>", "--snapshot-id <id>"], ["--source-cluster <name>"]],
    ["backup", ["--cluster <name>"], ["--tag <tag...>"]],
    ["show", ["--cluster <name>"], ["--table <name>"]],
    ["prune", ["--cluster <name>"], ["--targets <file>"]],
  ])(
    "are marked (required) in `%s --help` and named in its usage line",
    async (command, required, optional) => {
      const help = await cli([command, "--help"]);
      expect(help.code).toBe(ExitCodes.ok);
      for (const flags of required) {
        expect(optionEntry(help.stdout, flags)).toMatch(/\(required\)$/);
        expect(help.stdout.split("\n")[0]).toContain(` ${flags} `);
      }
      for (const flags of optional) expect(optionEntry(help.stdout, flags)).not.toContain("(required)");
    },
  );

  it("left out, give one line that names the option, what it is for and where the usage is, exit code 2", async () => {
    const missing = await cli(["restore", "--cluster", "prod"]);
    expect(missing.code).toBe(ExitCodes.usage);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toBe(
      "etcd-backup: restore needs --snapshot-id <id>: a VERIFIED snapshot (also --snapshot <id>) (see etcd-backup restore --help)\n",
    );

    const destination = await cli(["snapshot", "--endpoints", "http://127.0.0.1:1"]);
    expect(destination.code).toBe(ExitCodes.usage);
    expect(destination.stderr).toBe(
      "etcd-backup: snapshot needs --to <destination>: FILE, or s3://BUCKET/PREFIX (see etcd-backup snapshot --help)\n",
    );
  });

  it("keeps commander's other usage errors to one line as well, with the command's help named", async () => {
    const choice = await cli(["snapshot", "--to", "x.db", "--source", "ftp"]);
    expect(choice.code).toBe(ExitCodes.usage);
    expect(choice.stderr.trim().split("\n")).toHaveLength(1);
    expect(choice.stderr).toMatch(
      /^etcd-backup: option '--source <kind>' argument 'ftp' is invalid\..*\(see etcd-backup snapshot --help\)\n$/,
    );

    const nested = await cli(["config", "validate"]);
    expect(nested.code).toBe(ExitCodes.usage);
    expect(nested.stderr).toBe(
      "etcd-backup: missing required argument 'file' (see etcd-backup config validate --help)\n",
    );

    const unknown = await cli(["snapshots"]);
    expect(unknown.code).toBe(ExitCodes.usage);
    expect(unknown.stderr.trim().split("\n")).toHaveLength(1);
    expect(unknown.stderr).toMatch(
      /^etcd-backup: unknown command 'snapshots' \(Did you mean snapshot\?\) \(see etcd-backup --help\)\n$/,
    );
  });
});

describe("option spellings", () => {
  it("takes restore --snapshot ID, as the design spells it, for --snapshot-id, and nothing else's --snapshot", () => {
    expect(withOptionSpellings(["restore", "--cluster", "prod", "--snapshot", "S1"])).toEqual([
      "restore",
      "--cluster",
      "prod",
      "--snapshot-id",
      "S1",
    ]);
    expect(withOptionSpellings(["--debug", "restore", "--snapshot=S1"])).toEqual([
      "--debug",
      "restore",
      "--snapshot-id=S1",
    ]);
    expect(withOptionSpellings(["show", "--snapshot", "S1"])).toEqual(["show", "--snapshot", "S1"]);
  });
});
