import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CatalogueRepository } from "../../lambdas/core/catalogue/catalogue-repository.js";
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "../support/dynamodb-server.js";
import { type EtcdCluster, startEtcdCluster } from "../support/etcd-cluster.js";
import { createEtcdWriter } from "../support/etcd-writer.js";
import { type LocalS3, startLocalS3 } from "../support/s3-server.js";
import { makeTempDir } from "../support/temp-dir.js";

const run = promisify(execFile);
const cli = join(import.meta.dirname, "../../bin/etcd-backup.mjs");

async function etcdBackup(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], { maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

let etcd: EtcdCluster;
let s3: LocalS3;
let dynamo: LocalDynamoDb;
let work: { path: string; remove: () => Promise<void> };

beforeAll(async () => {
  [etcd, s3, dynamo, work] = await Promise.all([
    startEtcdCluster({ members: 3 }),
    startLocalS3(),
    startLocalDynamoDb(),
    makeTempDir("cli"),
  ]);
  const writer = createEtcdWriter(etcd);
  await writer.putMany(
    Array.from({ length: 300 }, (_, index) => [`/registry/pods/default/pod-${index}`, randomBytes(600)]),
  );
  await writer.delete("/registry/pods/default/pod-7");
});

afterAll(async () => {
  await Promise.all([etcd?.stop(), s3?.stop(), dynamo?.stop(), work?.remove()]);
});

describe("etcd-backup snapshot and verify", () => {
  it("saves a verified snapshot to a file whose figures equal `etcdctl snapshot status`", async () => {
    const file = join(work.path, "cli.db");
    const snapshot = await etcdBackup(
      "snapshot",
      "--endpoints",
      etcd.endpoints.join(","),
      "--to",
      file,
      "--json",
    );
    expect(snapshot.stderr).toBe("");
    expect(snapshot.code).toBe(0);
    const result = JSON.parse(snapshot.stdout);
    expect(result).toMatchObject({ cluster: "default", location: file, liveKeyCount: 299 });
    expect(result.snapshotId).toMatch(/^\d{8}T\d{9}Z-[0-9a-f]{6}$/);
    // The member it came from, then the other two, answer the snapshot's HashKV at its revision.
    expect(result.memberHash).toEqual({
      outcome: "matched",
      revision: result.revision,
      compactRevision: -1,
      hash: expect.any(Number),
      agreeing: expect.arrayContaining(etcd.endpoints),
    });
    expect(result.memberHash.agreeing).toHaveLength(3);

    const verify = await etcdBackup("verify", file, "--json");
    expect(verify.code).toBe(0);
    const ours = JSON.parse(verify.stdout);
    const { stdout } = await run("etcdctl", ["snapshot", "status", file, "-w", "json"]);
    const theirs = JSON.parse(stdout);
    expect({
      hash: ours.hash,
      revision: ours.revision,
      totalKey: ours.totalKey,
      totalSize: ours.totalSize,
    }).toEqual(theirs);
    expect(ours.revision).toBe(result.revision);
    expect(ours.sha256).toBe(result.sha256);
    // The members' own HashKV at the revision, which the snapshot command compared, is the file's too.
    const members = await Promise.all(
      etcd.endpoints.map(async (endpoint) => {
        const client = createEtcdClient({ endpoint });
        try {
          return await client.hashKV(ours.revision);
        } finally {
          client.close();
        }
      }),
    );
    for (const member of members) {
      expect(ours.kvHash).toEqual({ hash: member.hash, compactRevision: member.compactRevision });
    }
  });

  it("streams to S3, verifies the stored object and catalogues it VERIFIED", async () => {
    const snapshot = await etcdBackup(
      "snapshot",
      "--endpoints",
      etcd.endpoints[1] as string,
      "--to",
      `s3://${s3.bucket}/backups`,
      "--s3-endpoint",
      s3.endpoint,
      "--cluster",
      "cli-cluster",
      "--table",
      "catalogue",
      "--dynamodb-endpoint",
      dynamo.endpoint,
      "--json",
    );
    expect(snapshot.stderr).toBe("");
    expect(snapshot.code).toBe(0);
    const result = JSON.parse(snapshot.stdout);
    expect(result.location).toMatch(
      /^s3:\/\/etcd-backup-test\/backups\/cli-cluster\/\d{4}\/\d{2}\/\d{2}\/.+\.db$/,
    );

    const repository = new CatalogueRepository({
      client: createDynamoDbClient({ endpoint: dynamo.endpoint }),
      tableName: "catalogue",
    });
    const latest = await repository.findLatestVerified("cli-cluster");
    expect(latest).toMatchObject({
      snapshotId: result.snapshotId,
      status: "VERIFIED",
      bytes: result.bytes,
      sha256: result.sha256,
      revision: result.revision,
      liveKeyCount: 299,
      memberHash: { outcome: "matched", revision: result.revision, hash: result.memberHash.hash },
    });

    const verify = await etcdBackup("verify", result.location, "--s3-endpoint", s3.endpoint, "--json");
    expect(verify.code).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ revision: result.revision, sha256: result.sha256 });

    const catalogueFlags = ["--table", "catalogue", "--dynamodb-endpoint", dynamo.endpoint, "--json"];
    const list = await etcdBackup("list", "--cluster", "cli-cluster", ...catalogueFlags);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout).snapshots.map((row: { snapshotId: string }) => row.snapshotId)).toEqual([
      result.snapshotId,
    ]);
    const show = await etcdBackup("show", result.snapshotId, "--cluster", "cli-cluster", ...catalogueFlags);
    expect(JSON.parse(show.stdout)).toMatchObject({ status: "VERIFIED", sha256: result.sha256 });
    const targets = join(work.path, "targets.json");
    await writeFile(
      targets,
      JSON.stringify({
        prefix: "backups",
        targets: [{ name: "cli-cluster", schedule: "rate(1 hour)", etcd: { endpoints: etcd.endpoints } }],
      }),
    );
    const validate = await etcdBackup("config", "validate", targets, "--json");
    expect(JSON.parse(validate.stdout)).toMatchObject({
      valid: true,
      targets: [{ name: "cli-cluster", access: "direct" }],
    });
    const prune = await etcdBackup(
      "prune",
      "--dry-run",
      "--cluster",
      "cli-cluster",
      "--targets",
      targets,
      "--bucket",
      s3.bucket,
      "--s3-endpoint",
      s3.endpoint,
      ...catalogueFlags,
    );
    expect(prune.code).toBe(0);
    expect(JSON.parse(prune.stdout)).toMatchObject({
      dryRun: true,
      delete: [],
      keep: [{ snapshotId: result.snapshotId }],
    });
    const approve = await etcdBackup("approve", "no-such-execution", ...catalogueFlags);
    expect(approve.code).toBe(6);
    expect(approve.stderr).toContain(
      'no restore is waiting for approval under execution "no-such-execution"',
    );
  });

  it("reports an unreachable etcd in one line with exit code 4", async () => {
    const file = join(work.path, "never.db");
    const failed = await etcdBackup("snapshot", "--endpoints", "http://127.0.0.1:1", "--to", file);
    expect(failed.code).toBe(4);
    expect(failed.stderr.trim().split("\n")).toHaveLength(1);
    expect(failed.stderr).toMatch(/^etcd-backup: EtcdUnavailableError: .*127\.0\.0\.1:1/);
    expect(failed.stderr.match(/EtcdUnavailableError/g)).toHaveLength(1);
    expect(failed.stderr).not.toContain("Resolution note");
    expect(failed.stderr.trim()).toMatch(
      /check the endpoints, the TLS settings \(CA, client certificate and key\) and that the network reaches etcd's client port$/,
    );
    await expect(readFile(file)).rejects.toThrow();
    await expect(readFile(`${file}.part`)).rejects.toThrow();
  });

  it("names a bucket that does not exist in one line with exit code 6, not as access denied", async () => {
    const snapshot = await etcdBackup(
      "snapshot",
      "--endpoints",
      etcd.endpoints.join(","),
      "--to",
      "s3://nobucket/backups",
      "--s3-endpoint",
      s3.endpoint,
    );
    expect(snapshot.code).toBe(6);
    expect(snapshot.stderr).toBe(
      "etcd-backup: BucketNotFoundError: bucket nobucket does not exist (--to s3://nobucket/backups): create it, or name an existing bucket\n",
    );

    const verify = await etcdBackup("verify", "s3://nobucket/backups/x.db", "--s3-endpoint", s3.endpoint);
    expect(verify.code).toBe(6);
    expect(verify.stderr).toBe(
      "etcd-backup: BucketNotFoundError: bucket nobucket does not exist (s3://nobucket/backups/x.db): create it, or name an existing bucket\n",
    );
    // An object missing from a bucket that exists is still the object's absence, not the bucket's.
    const object = await etcdBackup("verify", `s3://${s3.bucket}/backups/x.db`, "--s3-endpoint", s3.endpoint);
    expect(object.code).toBe(6);
    expect(object.stderr).toMatch(/^etcd-backup: SnapshotNotFoundError: /);
  });

  it("refuses a --to file in a missing directory in one line naming the directory, with exit code 2", async () => {
    const missing = join(work.path, "no-such-directory");
    const failed = await etcdBackup(
      "snapshot",
      "--endpoints",
      etcd.endpoints.join(","),
      "--to",
      join(missing, "x.db"),
    );
    expect(failed.code).toBe(2);
    expect(failed.stderr.trim().split("\n")).toHaveLength(1);
    expect(failed.stderr).toContain(`directory ${missing} does not exist`);
    expect(failed.stderr).not.toContain(".part");

    const directory = await etcdBackup(
      "snapshot",
      "--endpoints",
      etcd.endpoints.join(","),
      "--to",
      work.path,
    );
    expect(directory.code).toBe(2);
    expect(directory.stderr).toContain(`--to ${work.path} is a directory`);

    // A catalogue row names an S3 object version: a file is not catalogued, and nothing is written.
    const file = join(work.path, "catalogued.db");
    const catalogued = await etcdBackup(
      "snapshot",
      "--endpoints",
      etcd.endpoints.join(","),
      "--to",
      file,
      "--table",
      "etcd-backup-catalogue",
    );
    expect(catalogued.code).toBe(2);
    expect(catalogued.stderr.trim().split("\n")).toHaveLength(1);
    expect(catalogued.stderr).toContain(
      `--table catalogues snapshots stored in S3, which a restore can use; ${file} is a file`,
    );
    expect(existsSync(file) || existsSync(`${file}.part`)).toBe(false);
  });

  it("reports a missing snapshot file in one line with exit code 6, and a directory with exit code 2", async () => {
    const missing = join(work.path, "nonexistent.db");
    const failed = await etcdBackup("verify", missing);
    expect(failed.code).toBe(6);
    expect(failed.stderr.trim().split("\n")).toHaveLength(1);
    expect(failed.stderr).toContain(`SnapshotNotFoundError: no snapshot file at ${missing}`);
    expect(failed.stderr).not.toContain("ENOENT");

    const directory = await etcdBackup("verify", work.path);
    expect(directory.code).toBe(2);
    expect(directory.stderr).toContain(`${work.path} is not a file`);
  });

  it("rejects a corrupted snapshot file in one line with exit code 3", async () => {
    const file = join(work.path, "cli.db");
    const damaged = await readFile(file);
    damaged.writeUInt8(damaged.readUInt8(5000) ^ 0x55, 5000);
    const damagedFile = join(work.path, "damaged.db");
    await writeFile(damagedFile, damaged);
    const failed = await etcdBackup("verify", damagedFile);
    expect(failed.code).toBe(3);
    expect(failed.stderr.trim().split("\n")).toHaveLength(1);
    expect(failed.stderr).toContain("SnapshotCorruptError");
  });

  it("names every invalid field of a targets file, with exit code 2", async () => {
    const file = join(work.path, "bad-targets.json");
    await writeFile(file, JSON.stringify({ targets: [{ name: "Bad_Name", schedule: "hourly" }] }));
    const failed = await etcdBackup("config", "validate", file);
    expect(failed.code).toBe(2);
    expect(failed.stderr).toContain("targets.0.name");
    expect(failed.stderr).toContain("targets.0.schedule");
    // A list to work through: one problem a line.
    expect(failed.stderr).toMatch(/is invalid \(\d+ problems\):\n {2}- targets\.0\.name: /);

    // Comments, as in the README's annotated example, are named as the cause, with where they are.
    const commented = join(work.path, "commented-targets.json");
    await writeFile(commented, '{\n  // prod\n  "targets": []\n}\n');
    const notJson = await etcdBackup("config", "validate", commented);
    expect(notJson.code).toBe(2);
    expect(notJson.stderr).toContain("(line 2, column 3); comments are not JSON");
  });

  it("says what list's --limit and --status expect, with exit code 2", async () => {
    const local = [
      "--cluster",
      "c",
      "--table",
      "t",
      "--dynamodb-endpoint",
      dynamo.endpoint,
      "--region",
      "us-east-1",
    ];
    const limit = await etcdBackup("list", ...local, "--limit", "abc");
    expect(limit.code).toBe(2);
    expect(limit.stderr).toContain('--limit expects a number of rows (1 to 1000), not "abc"');
    expect(limit.stderr).not.toContain("NaN");
    const status = await etcdBackup("list", ...local, "--status", "bogus");
    expect(status.code).toBe(2);
    expect(status.stderr).toContain(
      '--status expects one of IN_PROGRESS, UPLOADED, VERIFIED, FAILED, DELETED, not "bogus"',
    );
  });

  it("answers config validate --json on an invalid or non-JSON file with valid false and the errors, exit code 2", async () => {
    const invalid = join(work.path, "invalid-targets.json");
    await writeFile(invalid, JSON.stringify({ targets: [{ name: "Bad_Name", schedule: "hourly" }] }));
    const fields = await etcdBackup("config", "validate", invalid, "--json");
    expect(fields.code).toBe(2);
    const answer = JSON.parse(fields.stdout);
    expect(answer.valid).toBe(false);
    expect(answer.errors).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^targets\.0\.name: /),
        expect.stringMatching(/^targets\.0\.schedule: /),
      ]),
    );

    const notJson = join(work.path, "not-json.json");
    await writeFile(notJson, "{");
    const syntax = await etcdBackup("config", "validate", notJson, "--json");
    expect(syntax.code).toBe(2);
    expect(JSON.parse(syntax.stdout)).toEqual({
      valid: false,
      errors: [expect.stringContaining(`${notJson} is not JSON`)],
    });
  });

  it("answers --help for each command and rejects unknown flags with exit code 2", async () => {
    const commands = [
      "snapshot",
      "verify",
      "demo",
      "local up",
      "list",
      "show",
      "approve",
      "reject",
      "prune",
      "backup",
      "restore",
      "status",
    ];
    const helps = await Promise.all(commands.map((command) => etcdBackup(...command.split(" "), "--help")));
    helps.forEach((help, index) => {
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`Usage: etcd-backup ${commands[index]}`);
      // The program's own options, which every command takes, are listed with each.
      expect(help.stdout).toContain("--debug");
    });
    const wrong = await etcdBackup("snapshot", "--bogus");
    expect(wrong.code).toBe(2);
  });
});
