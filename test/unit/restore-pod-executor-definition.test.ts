// The pod executor's branch of statemachine/restore.asl.json: the executor WritePlans reports chooses
// how the agents start (ssm and local keep the Run Command path), pod agents are removed when the restore
// finishes or is aborted, and a removal that fails never changes the outcome. Under ssm, an abort reads
// what became of each agent's Run Command invocation instead.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ErrorNames } from "../../lambdas/core/errors.js";

interface State {
  Type: string;
  Next?: string;
  Default?: string;
  Choices?: Array<{ Variable: string; StringEquals: string; Next: string }>;
  Parameters?: { FunctionName?: string; Payload?: Record<string, unknown> };
  ResultSelector?: Record<string, string>;
  ResultPath?: string;
  Retry?: Array<{ ErrorEquals: string[] }>;
  Catch?: Array<{ ErrorEquals: string[]; Next: string; ResultPath?: string }>;
}

const definition = JSON.parse(
  await readFile(join(import.meta.dirname, "../../statemachine/restore.asl.json"), "utf8"),
) as { States: Record<string, State> };
/** The ASL's placeholder for a function's ARN, which the CDK and the local runner fill. */
const placeholder = (name: string) => ["$", "{", name, "}"].join("");
const state = (name: string): State => {
  const found = definition.States[name];
  if (!found) throw new Error(`no state ${name}`);
  return found;
};

/** Where a Choice on `$.plans.executor` goes for each executor. */
function route(name: string): Record<"ssm" | "pod" | "local", string | undefined> {
  const choice = state(name);
  expect(choice.Type).toBe("Choice");
  const target = (executor: string) =>
    choice.Choices?.find((rule) => rule.Variable === "$.plans.executor" && rule.StringEquals === executor)
      ?.Next ?? choice.Default;
  return { ssm: target("ssm"), pod: target("pod"), local: target("local") };
}

describe("the restore state machine's pod executor", () => {
  it("keeps the executor WritePlans reports, and starts pods for pod, Run Command for ssm and local", () => {
    expect(state("WritePlans").ResultSelector).toMatchObject({ "executor.$": "$.Payload.executor" });
    expect(state("WritePlans").Next).toBe("ChooseAgentExecutor");
    expect(route("ChooseAgentExecutor")).toEqual({
      ssm: "StartAgents",
      pod: "StartAgentPods",
      local: "StartAgents",
    });
    expect(state("StartAgents").Next).toBe("Phase_prepare");
    expect(state("StartAgentPods").Next).toBe("Phase_prepare");
  });

  it("starts the pods with the restore id and the launch URLs, retrying only a transient API failure", () => {
    const start = state("StartAgentPods");
    expect(start.Parameters?.FunctionName).toBe(placeholder("StartAgentPodsFunctionArn"));
    expect(start.Parameters?.Payload).toMatchObject({
      "restoreId.$": "$.plans.restoreId",
      "agents.$": "$.plans.agents",
    });
    const retried = (start.Retry ?? []).flatMap((retry) => retry.ErrorEquals);
    expect(retried).toContain(ErrorNames.KubernetesApi);
    expect(retried).not.toContain(ErrorNames.KubernetesAccessDenied);
    expect(retried).not.toContain("States.ALL");
    // A pod that did start has only checked its node: it is removed, and nothing was changed.
    expect(start.Catch).toEqual([
      { ErrorEquals: ["States.ALL"], ResultPath: "$.failure", Next: "RemoveAgentPodsBeforeChanges" },
    ]);
    expect(state("RemoveAgentPodsBeforeChanges").Next).toBe("RestoreFailedBeforeChanges");
  });

  it("removes the pods after the finish barrier and after an abort, for the pod executor only", () => {
    const finished = state("Is_finish_Done").Choices?.find((rule) => rule.StringEquals === "done");
    expect(finished?.Next).toBe("HasAgentPods_finish");
    expect(route("HasAgentPods_finish")).toEqual({
      ssm: "ReleaseLease",
      pod: "RemoveAgentPods_finish",
      local: "ReleaseLease",
    });
    expect(state("RemoveAgentPods_finish").Next).toBe("ReleaseLease");
    // An abort comes at prepare, before anything stopped: the notice says nothing was changed.
    expect(state("AbortAgents").Next).toBe("AbortedBeforeChanges");
    expect(state("AbortedBeforeChanges")).toMatchObject({
      Type: "Pass",
      Result: "none",
      ResultPath: "$.rolledBack",
    });
    expect(state("AbortedBeforeChanges").Next).toBe("AgentsAfterAbort");
    expect(route("AgentsAfterAbort")).toEqual({
      ssm: "DescribeAgentCommands_abort",
      pod: "RemoveAgentPods_abort",
      local: "DescribeAgentCommands_abort",
    });
    expect(state("RemoveAgentPods_abort").Next).toBe("NotifyRestoreFailed");
    // Only the failure paths read each pod's state first, for the notice; after a success, removal alone.
    const describes = (name: string) => state(name).Parameters?.Payload?.describePods;
    expect(describes("RemoveAgentPods_abort")).toBe(true);
    expect(describes("RemoveAgentPodsBeforeChanges")).toBe(true);
    expect(describes("RemoveAgentPods_finish")).toBeUndefined();
  });

  it("never lets a failed removal change the outcome or hide the failure being reported", () => {
    for (const [name, next] of [
      ["RemoveAgentPodsBeforeChanges", "RestoreFailedBeforeChanges"],
      ["RemoveAgentPods_finish", "ReleaseLease"],
      ["RemoveAgentPods_abort", "NotifyRestoreFailed"],
    ] as const) {
      const remove = state(name);
      expect(remove.Parameters?.FunctionName).toBe(placeholder("RemoveAgentPodsFunctionArn"));
      expect(remove.ResultPath).toBe("$.agentPodsRemoved");
      expect(remove.Catch).toEqual([
        { ErrorEquals: ["States.ALL"], ResultPath: "$.agentPodsLeftover", Next: next },
      ]);
    }
  });

  it("leaves the pods of a rollback in place, with their logs, until their deadline", () => {
    const text = JSON.stringify(definition.States);
    const removals = Object.entries(definition.States).filter(([, candidate]) =>
      JSON.stringify(candidate).includes("RemoveAgentPodsFunctionArn"),
    );
    expect(removals.map(([name]) => name).sort()).toEqual([
      "RemoveAgentPodsBeforeChanges",
      "RemoveAgentPods_abort",
      "RemoveAgentPods_finish",
    ]);
    // The rollback's end goes straight to the notification.
    expect(state("Is_rollback_Done").Default).toBe("NotifyRestoreFailed");
    expect(text).toContain("AgentsAfterAbort");
  });
});

describe("the restore state machine's ssm executor, after an abort", () => {
  it("reads each agent's Run Command invocation for the notice, and never fails on it", () => {
    const describe = definition.States.DescribeAgentCommands_abort as unknown as {
      Type: string;
      ItemsPath: string;
      ItemSelector: Record<string, string>;
      ItemProcessor: {
        StartAt: string;
        States: Record<string, State & { Resource?: string; End?: boolean }>;
      };
      ResultPath: string;
      Catch: Array<{ ErrorEquals: string[]; Next: string }>;
      Next: string;
    };
    expect(describe.Type).toBe("Map");
    // One item per command StartAgents sent, in the order of the plans' agents, whose instance it names.
    expect(describe.ItemsPath).toBe("$.agentCommands");
    expect(describe.ItemSelector).toEqual({
      "commandId.$": "$$.Map.Item.Value.commandId",
      "agent.$": "States.ArrayGetItem($.plans.agents, $$.Map.Item.Index)",
    });
    const task = describe.ItemProcessor.States[describe.ItemProcessor.StartAt];
    expect(task?.Resource).toBe("arn:aws:states:::aws-sdk:ssm:getCommandInvocation");
    expect(task?.Parameters).toEqual({ "CommandId.$": "$.commandId", "InstanceId.$": "$.agent.instanceId" });
    expect(task?.Catch?.map((rule) => rule.ErrorEquals)).toEqual([["States.ALL"]]);
    expect(describe.ResultPath).toBe("$.agentCommandStates");
    expect(describe.Next).toBe("NotifyRestoreFailed");
    expect(describe.Catch).toEqual([
      { ErrorEquals: ["States.ALL"], ResultPath: "$.agentCommandStatesFailure", Next: "NotifyRestoreFailed" },
    ]);
    // StartAgents keeps the commands where the Map reads them.
    expect((definition.States.StartAgents as unknown as { ResultPath: string }).ResultPath).toBe(
      "$.agentCommands",
    );
  });
});
