import { readFile } from "node:fs/promises";
import { join } from "node:path";
// @ts-expect-error asl-validator ships no type definitions
import aslValidator from "asl-validator";
import { describe, expect, it } from "vitest";
import { diagramSection } from "../../cli/local/asl-diagram.js";
import { backupFunctions } from "../../cli/local/backup-functions.js";
import { restoreFunctions } from "../../cli/local/restore-functions.js";
import { ErrorNames } from "../../lambdas/core/errors.js";

const root = join(import.meta.dirname, "../..");
const definitions = {
  "backup.asl.json": { functions: backupFunctions, other: ["OnCallTopicArn"] },
  "restore.asl.json": { functions: restoreFunctions, other: ["OnCallTopicArn", "BackupStateMachineArn"] },
};
const awsErrorNames = /^(States\.[A-Za-z]+|Lambda\.[A-Za-z]+)$/;

describe.each(Object.entries(definitions))("%s", (file, { functions, other }) => {
  const text = () => readFile(join(root, "statemachine", file), "utf8");

  it("retries and catches only error names that exist in code (or are Step Functions' own)", async () => {
    const names = [...(await text()).matchAll(/"ErrorEquals":\s*\[([^\]]*)\]/g)].flatMap((match) =>
      [...(match[1] as string).matchAll(/"([^"]+)"/g)].map((name) => name[1] as string),
    );
    expect(names.length).toBeGreaterThan(0);
    const known = new Set<string>(Object.values(ErrorNames));
    expect(names.filter((name) => !known.has(name) && !awsErrorNames.test(name))).toEqual([]);
  });

  it("uses only substitutions the CDK stack and the local runner both fill", async () => {
    const used = new Set([...(await text()).matchAll(/\$\{(\w+)\}/g)].map((match) => match[1] as string));
    expect([...used].sort()).toEqual([...Object.keys(functions), ...other].sort());
  });

  it("is a valid Amazon States Language definition", async () => {
    const definition = JSON.parse(
      (await text()).replace(/\$\{(\w+)\}/g, "arn:aws:lambda:us-east-1:123456789012:function:$1"),
    );
    const { isValid, errors } = aslValidator(definition);
    expect(errors).toEqual([]);
    expect(isValid).toBe(true);
  });

  it("is drawn in the README as it is now (npm run docs:diagrams)", async () => {
    const readme = await readFile(join(root, "README.md"), "utf8");
    expect(readme).toContain(await diagramSection(file.replace(".asl.json", "")));
  });
});
