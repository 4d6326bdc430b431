// Runs the app exactly as `npx cdk synth` does (cdk.json's app command, its context passed the way the
// CLI passes it, the example targets file), with real bundling through the local esbuild, in a child
// process; then checks what would be deployed: each bundle is small, loads as an ES module exporting
// `handler`, and the steps that checksum whole snapshots carry the linux-arm64 build of @node-rs/crc32.
import { execFile } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { backupSteps } from "../../infra/backup-workflow.js";
import { bundledAgentScript } from "../../infra/lambda-step-function.js";
import { installedVersion } from "../../infra/native-modules.js";
import { restoreSteps } from "../../infra/restore-workflow.js";
import { snapshotAgeStep } from "../../infra/snapshot-age-check.js";
import { cdkJsonContext, exampleTargetsFile, projectRoot } from "./stack-fixtures.js";

/** Budget for the code Lambda loads (index.mjs); the source map beside it is reported, not limited. */
const codeLimitBytes = 5 * 1024 * 1024;
const arm64Binary = join("node_modules", "@node-rs", "crc32-linux-arm64-gnu", "crc32.linux-arm64-gnu.node");

function directorySize(path: string): number {
  const stats = statSync(path);
  if (!stats.isDirectory()) return stats.size;
  return readdirSync(path).reduce((total, entry) => total + directorySize(join(path, entry)), 0);
}

/** e_machine of an ELF file (183 is AArch64). */
function elfMachine(path: string): number {
  const header = Buffer.alloc(20);
  readSync(openSync(path, "r"), header, 0, 20, 0);
  expect(header.subarray(0, 4).toString("latin1")).toBe("\x7fELF");
  return header.readUInt16LE(18);
}

type Resources = Record<
  string,
  { Type: string; Properties: { Description?: string; Code?: { S3Key: string } } }
>;

let outdir: string;
let resources: Resources;
const bundleOf = (description: string): string => {
  const fn = Object.values(resources).find(
    (resource) =>
      resource.Type === "AWS::Lambda::Function" && resource.Properties.Description === description,
  );
  const key = fn?.Properties.Code?.S3Key;
  if (!key) throw new Error(`no function described as "${description}"`);
  return join(outdir, `asset.${key.replace(/\.zip$/, "")}`);
};

/** The IAM actions that allow each S3 operation the product sends (any one of them, by VersionId or not). */
const s3ActionsFor: Record<string, string[]> = {
  AbortMultipartUpload: ["s3:AbortMultipartUpload"],
  CompleteMultipartUpload: ["s3:PutObject"],
  CreateMultipartUpload: ["s3:PutObject"],
  UploadPart: ["s3:PutObject"],
  PutObject: ["s3:PutObject"],
  DeleteObject: ["s3:DeleteObjectVersion", "s3:DeleteObject"],
  GetObject: ["s3:GetObjectVersion", "s3:GetObject"],
  HeadObject: ["s3:GetObjectVersion", "s3:GetObject"],
  GetObjectTagging: ["s3:GetObjectVersionTagging", "s3:GetObjectTagging"],
  PutObjectTagging: ["s3:PutObjectVersionTagging", "s3:PutObjectTagging"],
  GetObjectRetention: ["s3:GetObjectRetention"],
  GetObjectLegalHold: ["s3:GetObjectLegalHold"],
  ListMultipartUploads: ["s3:ListBucketMultipartUploads"],
  ListObjectsV2: ["s3:ListBucket"],
  ListObjectVersions: ["s3:ListBucketVersions"],
};

type Statement = { Action: string | string[] };
type Policy = {
  Type: string;
  Properties: { Roles?: unknown[]; PolicyDocument?: { Statement: Statement[] } };
};

/** The S3 actions the policies attached to the function's role allow. */
function s3ActionsOfFunction(description: string): string[] {
  const fn = Object.values(resources).find(
    (resource) =>
      resource.Type === "AWS::Lambda::Function" && resource.Properties.Description === description,
  ) as unknown as { Properties: { Role: { "Fn::GetAtt": [string, string] } } };
  const roleId = fn.Properties.Role["Fn::GetAtt"][0];
  return (Object.values(resources) as unknown as Policy[])
    .filter(
      (resource) =>
        resource.Type === "AWS::IAM::Policy" &&
        JSON.stringify(resource.Properties.Roles ?? []).includes(JSON.stringify({ Ref: roleId })),
    )
    .flatMap((policy) => policy.Properties.PolicyDocument?.Statement ?? [])
    .flatMap((statement) => (Array.isArray(statement.Action) ? statement.Action : [statement.Action]))
    .filter((action) => action.startsWith("s3:"));
}

/** The AWS SDK operations whose command classes a function's bundle holds (minified: `class extends X(a,b,"Op"`). */
function sdkOperationsIn(description: string): Set<string> {
  const code = readFileSync(join(bundleOf(description), "index.mjs"), "utf8");
  return new Set(
    [...code.matchAll(/class extends [\w$]+\([\w$]+,[\w$]+,"([A-Za-z]+)"/g)].map(
      (match) => match[1] as string,
    ),
  );
}

/** Every function the app deploys: the two state machines' steps and the age check of long schedules. */
const allSteps = [...backupSteps, ...restoreSteps, snapshotAgeStep];

beforeAll(async () => {
  outdir = mkdtempSync(join(tmpdir(), "cdk-synth-"));
  // The example targets plus a weekly one, whose freshness needs the age check's function.
  const example = JSON.parse(readFileSync(exampleTargetsFile(), "utf8")) as { targets: object[] };
  const targets = join(outdir, "targets.json");
  writeFileSync(
    targets,
    JSON.stringify({
      ...example,
      targets: [
        ...example.targets,
        { ...example.targets[0], name: "archive", schedule: "cron(0 3 ? * SUN *)" },
      ],
    }),
  );
  const { app } = JSON.parse(readFileSync(join(projectRoot, "cdk.json"), "utf8")) as { app: string };
  const { CDK_VALIDATION: _ignored, ...environment } = process.env;
  await promisify(execFile)("bash", ["-c", app], {
    cwd: projectRoot,
    env: {
      ...environment,
      CDK_OUTDIR: outdir,
      CDK_CONTEXT_JSON: JSON.stringify({ ...cdkJsonContext(), targets }),
    },
    maxBuffer: 64 * 1024 * 1024,
  });
  resources = (
    JSON.parse(readFileSync(join(outdir, "EtcdBackup.template.json"), "utf8")) as { Resources: Resources }
  ).Resources;
}, 480_000);

describe("handler bundles", () => {
  it("synthesizes with no validation finding (cdk-nag and CloudFormation rules)", () => {
    const report = JSON.parse(readFileSync(join(outdir, "validation-report.json"), "utf8")) as {
      pluginReports: unknown[];
    };
    expect(report.pluginReports).toEqual([]);
  });

  it.each(allSteps.map((step) => [step.description, step]))(
    "keeps the bundle's code under 5 MB: %s",
    (_handler, step) => {
      const bundle = bundleOf(step.description);
      expect(statSync(join(bundle, "index.mjs")).size).toBeLessThan(codeLimitBytes);
      expect(existsSync(join(bundle, "index.mjs.map"))).toBe(true);
      // Code, source map and native module together: a guard against a dependency ballooning.
      expect(directorySize(bundle)).toBeLessThan(4 * codeLimitBytes);
    },
  );

  it("ships the linux-arm64 build of @node-rs/crc32, at the installed version, only where snapshots are checksummed", () => {
    const version = installedVersion(projectRoot, "@node-rs/crc32");
    for (const step of backupSteps) {
      const bundle = bundleOf(step.description);
      if (!step.nativeCrc32c) {
        expect(existsSync(join(bundle, "node_modules")), step.handler).toBe(false);
        continue;
      }
      expect(elfMachine(join(bundle, arm64Binary))).toBe(183);
      expect(readdirSync(join(bundle, "node_modules", "@node-rs")).sort()).toEqual([
        "crc32",
        "crc32-linux-arm64-gnu",
      ]);
      expect(installedVersion(bundle, "@node-rs/crc32")).toBe(version);
    }
    expect(backupSteps.filter((step) => step.nativeCrc32c).map((step) => step.handler)).toEqual([
      "take-snapshot",
      "verify-snapshot",
    ]);
  });

  it("loads every bundle as an ES module exporting handler (the native module falls back where it cannot load)", async () => {
    const urls = allSteps.map((step) => pathToFileURL(join(bundleOf(step.description), "index.mjs")).href);
    const script = `
      for (const url of ${JSON.stringify(urls)}) {
        const module = await import(url);
        if (typeof module.handler !== "function") throw new Error(url + " exports no handler");
      }
      console.log("loaded " + ${urls.length});
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], {
      env: { ...process.env, AWS_REGION: "eu-west-1" },
    });
    expect(stdout.trim().split("\n").at(-1)).toBe(`loaded ${urls.length}`);
  });

  it("maps a failing handler's stack trace to the TypeScript sources on Lambda, without Node's --enable-source-maps", async () => {
    const step = backupSteps.find((candidate) => candidate.handler === "verify-snapshot");
    const bundle = join(bundleOf(step?.description ?? ""), "index.mjs");
    expect(existsSync(`${bundle}.map`)).toBe(true);
    // An event without its input fails the schema check, in lambdas/core/backup/step-payloads.ts.
    const script = `
      const { handler } = await import(${JSON.stringify(pathToFileURL(bundle).href)});
      const context = { functionName: "verify", awsRequestId: "1", getRemainingTimeInMillis: () => 1000 };
      try { await handler({}, context); } catch (error) { console.log(JSON.stringify(error.stack)); }
    `;
    const stackOn = async (environment: Record<string, string>) => {
      const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], {
        env: { ...process.env, AWS_REGION: "eu-west-1", POWERTOOLS_LOG_LEVEL: "SILENT", ...environment },
      });
      return JSON.parse(stdout.trim().split("\n").at(-1) as string) as string;
    };
    const onLambda = await stackOn({ AWS_LAMBDA_FUNCTION_NAME: "verify" });
    expect(onLambda).toMatch(/^InvalidInputError: /);
    expect(onLambda).toMatch(/\n {4}at lambdas\/core\/backup\/step-payloads\.ts:\d+:\d+/);
    expect(onLambda).not.toMatch(/index\.mjs:\d+/);
    // Elsewhere the hook is not installed: the same error points into the minified bundle.
    expect(await stackOn({})).toMatch(/index\.mjs:\d+:\d+/);
  });

  it.each(allSteps.map((step) => [step.description, step]))(
    "grants its role every S3 action its bundle's code can call: %s",
    (_description, step) => {
      // Bundles are tree-shaken: an S3 command class is in one only if code that sends it is. The role
      // must allow each (one of the actions listed: with a VersionId or without).
      const operations = sdkOperationsIn(step.description);
      const granted = new Set(s3ActionsOfFunction(step.description));
      const missing = [...operations]
        .filter((operation) => operation !== undefined && operation in s3ActionsFor)
        .filter((operation) => !s3ActionsFor[operation as string]?.some((action) => granted.has(action)));
      expect(missing, `${step.handler} calls S3 ${missing.join(", ")} without the grant`).toEqual([]);
    },
  );

  it("finds the S3 commands in a bundle, so that the grant check above is not vacuous", () => {
    const takeSnapshot = backupSteps.find((step) => step.handler === "take-snapshot");
    const operations = sdkOperationsIn(takeSnapshot?.description ?? "");
    for (const operation of ["CreateMultipartUpload", "UploadPart", "AbortMultipartUpload", "DeleteObject"]) {
      expect(operations.has(operation), operation).toBe(true);
    }
    const acquireLease = backupSteps.find((step) => step.handler === "acquire-lease");
    expect([...sdkOperationsIn(acquireLease?.description ?? "")].filter((op) => op in s3ActionsFor)).toEqual(
      [],
    );
  });

  it("ships the restore agent's script in the write-restore-plans bundle, where RESTORE_AGENT_SCRIPT points", () => {
    const step = restoreSteps.find((candidate) => candidate.handler === "write-restore-plans");
    const bundle = bundleOf(step?.description ?? "");
    const source = join(projectRoot, ...bundledAgentScript.source);
    expect(readFileSync(join(bundle, "etcd-restore-agent.sh"), "utf8")).toBe(readFileSync(source, "utf8"));
  });
});
