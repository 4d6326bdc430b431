import { readFile } from "node:fs/promises";
import { join } from "node:path";
// @ts-expect-error asl-validator ships no type definitions
import aslValidator from "asl-validator";
import { describe, expect, it } from "vitest";
import { diagramSection } from "../../cli/local/asl-diagram.js";
import { backupFunctions } from "../../cli/local/backup-functions.js";
import { restoreFunctions } from "../../cli/local/restore-functions.js";
import { ErrorNames } from "../../lambdas/core/errors.js";
import { RestorePhases } from "../../lambdas/core/restore/restore-plan.js";

const root = join(import.meta.dirname, "../..");
const definitions = {
  "backup.asl.json": { functions: backupFunctions, other: ["OnCallTopicArn"] },
  "restore.asl.json": {
    functions: restoreFunctions,
    other: ["OnCallTopicArn", "BackupStateMachineArn", "AgentExecutionTimeoutSeconds"],
  },
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

describe("backup.asl.json's retries", () => {
  type Retrier = { ErrorEquals: string[] };
  const retriedBy = async (state: string) => {
    const definition = JSON.parse(await readFile(join(root, "statemachine", "backup.asl.json"), "utf8")) as {
      States: Record<string, { Retry?: Retrier[] }>;
    };
    return (definition.States[state]?.Retry ?? []).flatMap((retrier) => retrier.ErrorEquals);
  };

  it("never retries a corrupt snapshot or bad input, in any state", async () => {
    for (const state of [
      "AcquireLease",
      "ResolveTarget",
      "TakeSnapshot",
      "VerifySnapshot",
      "PruneSnapshots",
    ]) {
      const retried = await retriedBy(state);
      expect(retried, state).not.toContain(ErrorNames.SnapshotCorrupt);
      expect(retried, state).not.toContain(ErrorNames.InvalidInput);
      expect(retried, state).not.toContain("States.ALL");
    }
  });

  it("reads a snapshot back again when S3's body broke off, instead of failing a sound snapshot", async () => {
    expect(await retriedBy("VerifySnapshot")).toContain(ErrorNames.SnapshotStreamInterrupted);
  });
});

describe("restore.asl.json's barriers", () => {
  interface State {
    Type: string;
    Next?: string;
    Choices?: Array<{ StringEquals?: string; Next: string }>;
    Catch?: Array<{ Next: string }>;
    Parameters?: { FunctionName?: string; Payload?: { phase?: string } };
  }
  const load = async () =>
    JSON.parse(await readFile(join(root, "statemachine", "restore.asl.json"), "utf8")) as {
      States: Record<string, State>;
    };

  it("moves the agents through the phases in RestorePhases' order, every API server stopped before etcd", async () => {
    const { States } = await load();
    const phases: string[] = [];
    let name: string | undefined = "Phase_prepare";
    for (let steps = 0; name && steps < 100; steps++) {
      const state: State = States[name] as State;
      const isSetPhase = state.Parameters?.FunctionName?.includes("SetRestorePhaseFunctionArn");
      if (isSetPhase && state.Parameters?.Payload?.phase) phases.push(state.Parameters.Payload.phase);
      // A barrier's Choice moves on when every agent is done.
      name = state.Choices?.find((choice) => choice.StringEquals === "done")?.Next ?? state.Next;
    }
    expect(phases).toEqual(RestorePhases.filter((phase) => phase !== "rollback" && phase !== "abort"));
    expect(phases.indexOf("stop-apiserver")).toBeLessThan(phases.indexOf("stop"));
  });

  it("rolls back on any failure from the first stop until the API servers have started", async () => {
    const { States } = await load();
    const names = Object.keys(States);
    const between = names.slice(names.indexOf("Phase_stop_apiserver"), names.indexOf("Phase_finish"));
    expect(between).toContain("Is_stop_Done");
    for (const name of between) {
      const state = States[name] as State;
      if (state.Type === "Task")
        expect(
          state.Catch?.map((handler) => handler.Next),
          name,
        ).toEqual(["StartRollback"]);
      if (state.Type === "Choice") {
        expect(state.Choices?.find((choice) => choice.StringEquals === "failed")?.Next, name).toBe(
          "StartRollback",
        );
      }
    }
  });
});
