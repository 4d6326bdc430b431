// Runs a state machine definition from statemachine/ on this machine with aws-local-stepfunctions:
// the `${...}` substitutions the CDK fills become local ARNs, each Lambda ARN maps to the real handler
// module, and SNS publishes go to a local sink. A function error reaches Retry/Catch as on AWS: Error is
// the error's name, Cause the Lambda error JSON.
import "./promise-with-resolvers.js";
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Context } from "aws-lambda";
import { StateMachine } from "aws-local-stepfunctions";

export type LocalHandler = (event: unknown, context: Context) => Promise<unknown>;

export interface PublishedMessage {
  topicArn: string;
  subject?: string;
  message: string;
}

export interface StateEvent {
  type: "entered" | "exited" | "failed" | "retried" | "caught";
  state: string;
  at: number;
  /** The state's type (`Task`, `Fail`, …): a Fail state "fails" as the execution's end, not a step's failure. */
  stateType?: string;
  /** A failed state's error name. */
  detail?: string;
  /** A failed state's cause (a Lambda function's error JSON). */
  cause?: string;
}

export interface LocalRunOptions {
  /** Definition file under statemachine/, e.g. `backup.asl.json`. */
  definition: string;
  /** Lambda substitution name (e.g. `TakeSnapshotFunctionArn`) → handler. */
  functions: Record<string, () => Promise<LocalHandler>>;
  /** Other substitutions, e.g. `OnCallTopicArn`. */
  substitutions?: Record<string, string>;
  input: Record<string, unknown>;
  executionName?: string;
  /** Wait between retries, in ms, instead of the definition's seconds (0 in tests). */
  retryIntervalMs?: number;
  /** Wait states' pause, in ms, instead of the definition's seconds. */
  waitMs?: number;
  /** Hears each SNS publish, with the ARN of the execution that published it. */
  onPublish?: (message: PublishedMessage, executionArn: string) => void;
  onEvent?: (event: StateEvent) => void;
  /**
   * Answers a `.waitForTaskToken` task once its function has run: resolves with its output, or rejects as
   * SendTaskFailure (or the state's timeout) would.
   */
  answerTaskToken?: (task: { taskToken: string; executionName: string }) => Promise<unknown>;
  /** Runs `states:startExecution.sync:2`: a nested execution of another state machine. */
  startExecution?: (
    stateMachineArn: string,
    input: unknown,
  ) => Promise<{ ExecutionArn: string; Status: string; Output?: unknown }>;
  /** Plays `aws-sdk:ssm:sendCommand` (AWS-RunShellScript) on this machine. */
  sendCommand?: (parameters: {
    InstanceIds: string[];
    Parameters: { commands: string[] };
  }) => Promise<{ Command: { CommandId: string } }>;
  /** Plays `aws-sdk:ssm:getCommandInvocation` for the commands `sendCommand` started. */
  getCommandInvocation?: (parameters: {
    CommandId: string;
    InstanceId: string;
  }) => Promise<{ Status: string; StatusDetails: string; StandardErrorContent: string }>;
}

export interface LocalRunResult {
  status: "SUCCEEDED" | "FAILED";
  output?: unknown;
  error?: { name: string; cause: string };
  executionArn: string;
  states: StateEvent[];
}

const region = "local";
const account = "000000000000";
const definitionDir = join(import.meta.dirname, "../../statemachine");

/** The ARN of a local execution: the local runner's region and account. */
export function localExecutionArn(machineName: string, executionName: string): string {
  return `arn:aws:states:${region}:${account}:execution:${machineName}:${executionName}`;
}

export async function runLocalStateMachine(options: LocalRunOptions): Promise<LocalRunResult> {
  const name = options.executionName ?? randomUUID();
  const machineName = options.definition.replace(/\.asl\.json$/, "");
  const executionArn = localExecutionArn(machineName, name);
  const functionArns = Object.fromEntries(
    Object.keys(options.functions).map((key) => [
      key,
      `arn:aws:lambda:${region}:${account}:function:${key.replace(/FunctionArn$/, "")}`,
    ]),
  );
  const handlersByArn = new Map(
    Object.entries(options.functions).map(([key, load]) => [functionArns[key] as string, load]),
  );
  const substitutions: Record<string, string> = { ...options.substitutions, ...functionArns };
  const text = (await readFile(join(definitionDir, options.definition), "utf8")).replace(
    /\$\{(\w+)\}/g,
    (match, key: string) => {
      const value = substitutions[key];
      if (value === undefined) throw new Error(`${options.definition}: no value for substitution ${match}`);
      return value;
    },
  );
  const definition = JSON.parse(text) as { States: Record<string, StateDefinition> };

  const invoke = async (parameters: { FunctionName: string; Payload: unknown }) => {
    const load = handlersByArn.get(parameters.FunctionName);
    if (!load) throw new Error(`no local handler for ${parameters.FunctionName}`);
    const handler = await load();
    try {
      return {
        Payload: await handler(parameters.Payload, lambdaContext(parameters.FunctionName)),
        StatusCode: 200,
      };
    } catch (error) {
      throw asLambdaError(error);
    }
  };
  const publish = async (parameters: { TopicArn: string; Subject?: string; Message: string }) => {
    options.onPublish?.(
      { topicArn: parameters.TopicArn, subject: parameters.Subject, message: parameters.Message },
      executionArn,
    );
    return { MessageId: randomUUID() };
  };
  const taskToken = `local-task-token-${name}`;
  const waitForTaskToken = async (parameters: { FunctionName: string; Payload: unknown }) => {
    if (!options.answerTaskToken) throw new Error("this run cannot answer .waitForTaskToken tasks");
    await invoke(parameters);
    return options.answerTaskToken({ taskToken, executionName: name });
  };
  // biome-ignore lint/suspicious/noExplicitAny: each resource takes its own parameters
  const localResources: Record<string, (parameters: any) => Promise<unknown>> = {
    "arn:aws:states:::lambda:invoke": invoke,
    "arn:aws:states:::lambda:invoke.waitForTaskToken": waitForTaskToken,
    "arn:aws:states:::sns:publish": publish,
    "arn:aws:states:::states:startExecution.sync:2": async (parameters: {
      StateMachineArn: string;
      Input: unknown;
    }) => {
      if (!options.startExecution) throw new Error("this run cannot start nested executions");
      return options.startExecution(parameters.StateMachineArn, parameters.Input);
    },
    "arn:aws:states:::aws-sdk:ssm:sendCommand": async (parameters: {
      InstanceIds: string[];
      Parameters: { commands: string[] };
    }) => {
      if (!options.sendCommand) throw new Error("this run cannot send commands to nodes");
      return options.sendCommand(parameters);
    },
    "arn:aws:states:::aws-sdk:ssm:getCommandInvocation": async (parameters: {
      CommandId: string;
      InstanceId: string;
    }) => {
      if (!options.getCommandInvocation) throw new Error("this run sent no commands to nodes");
      return options.getCommandInvocation(parameters);
    },
  };
  // biome-ignore lint/suspicious/noExplicitAny: the library types handlers over its own JSON type
  const taskResourceLocalHandlers: Record<string, (input: any) => Promise<any>> = {};
  const retryIntervalOverrides: Record<string, number> = {};
  const waitTimeOverrides: Record<string, number> = {};
  for (const [stateName, state] of allStates(definition.States)) {
    // aws-local-stepfunctions resolves TimeoutSecondsPath against the resolved Parameters, where Step
    // Functions reads the state's input; locally the task's answerer keeps the bound (the approval's own).
    delete state.TimeoutSecondsPath;
    if (state.Type === "Wait" && options.waitMs !== undefined) waitTimeOverrides[stateName] = options.waitMs;
    if (state.Type !== "Task") continue;
    const local = localResources[state.Resource ?? ""];
    if (!local)
      throw new Error(
        `${options.definition}: state ${stateName} uses ${state.Resource}, which has no local equivalent`,
      );
    taskResourceLocalHandlers[stateName] = local;
    if (options.retryIntervalMs !== undefined) retryIntervalOverrides[stateName] = options.retryIntervalMs;
  }

  const machine = new StateMachine(definition as never, {
    validationOptions: { checkPaths: true, checkArn: true },
  });
  const execution = machine.run(options.input as never, {
    overrides: { taskResourceLocalHandlers, retryIntervalOverrides, waitTimeOverrides },
    context: {
      Execution: {
        Id: executionArn,
        Name: name,
        Input: options.input as never,
        StartTime: new Date().toISOString(),
      },
      Task: { Token: taskToken },
      StateMachine: {
        Id: executionArn.replace(":execution:", ":stateMachine:").replace(`:${name}`, ""),
        Name: machineName,
      },
    },
  });
  const states: StateEvent[] = [];
  const logging = (async () => {
    for await (const event of execution.eventLogs) {
      const recorded = toStateEvent(event as unknown as Record<string, unknown>);
      if (!recorded) continue;
      states.push(recorded);
      options.onEvent?.(recorded);
    }
  })();
  try {
    const output = await execution.result;
    await logging.catch(() => undefined);
    return { status: "SUCCEEDED", output, executionArn, states };
  } catch (error) {
    await logging.catch(() => undefined);
    const failure = error as { name?: string; message?: string; cause?: unknown };
    const inner = (failure.cause ?? failure) as { name?: string; message?: string };
    return {
      status: "FAILED",
      error: { name: inner.name ?? "Error", cause: inner.message ?? "" },
      executionArn,
      states,
    };
  }
}

interface StateDefinition {
  Type: string;
  Resource?: string;
  TimeoutSecondsPath?: string;
  ItemProcessor?: { States: Record<string, StateDefinition> };
  Branches?: Array<{ States: Record<string, StateDefinition> }>;
}

/** Every state, including those inside Map item processors and Parallel branches. */
function allStates(states: Record<string, StateDefinition>): Array<[string, StateDefinition]> {
  return Object.entries(states).flatMap(([name, state]) => [
    [name, state] as [string, StateDefinition],
    ...(state.ItemProcessor ? allStates(state.ItemProcessor.States) : []),
    ...(state.Branches ?? []).flatMap((branch) => allStates(branch.States)),
  ]);
}

function toStateEvent(event: Record<string, unknown>): StateEvent | undefined {
  const state = (event.state as { name?: string } | undefined)?.name;
  const at = typeof event.timestamp === "number" ? event.timestamp : Date.now();
  switch (event.type) {
    case "StateEntered":
      return { type: "entered", state: state ?? "?", at };
    case "StateExited":
      return { type: "exited", state: state ?? "?", at };
    case "StateFailed":
      return {
        type: "failed",
        state: state ?? "?",
        stateType: (event.state as { type?: string } | undefined)?.type,
        at,
        detail: String(event.Error ?? ""),
        cause: causeText(event.Cause),
      };
    case "StateRetried":
      return { type: "retried", state: state ?? "?", at };
    case "StateCaught":
      return { type: "caught", state: state ?? "?", at };
    default:
      return undefined;
  }
}

function causeText(cause: unknown): string | undefined {
  if (cause === undefined || cause === null) return undefined;
  if (typeof cause === "string") return cause;
  if (cause instanceof Error) return cause.message;
  return JSON.stringify(cause);
}

/** What Step Functions reports for a Lambda function error: its type, and the Lambda error JSON as Cause. */
function asLambdaError(error: unknown): Error {
  const original = error instanceof Error ? error : new Error(String(error));
  const wrapped = new Error(JSON.stringify({ errorType: original.name, errorMessage: original.message }));
  wrapped.name = original.name;
  return wrapped;
}

/** The context a Lambda invocation of `functionArn` would receive, for handlers run in this process. */
export function lambdaContext(functionArn: string): Context {
  const functionName = functionArn.split(":").pop() ?? "local";
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: "$LATEST",
    invokedFunctionArn: functionArn,
    memoryLimitInMB: "1024",
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: "local",
    getRemainingTimeInMillis: () => 900_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
