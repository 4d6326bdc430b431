// The backup state machine (statemachine/backup.asl.json) run locally with the real handlers, or with some
// of them wrapped, and what a test asserts on: the states entered, each state's retries, and what on-call
// was sent.
import { backupFunctions } from "../../cli/local/backup-functions.js";
import { type PublishedMessage, runLocalStateMachine } from "../../cli/local/local-state-machine.js";

export const onCallTopicArn = "arn:aws:sns:local:000000000000:on-call";

export async function runBackupMachine(
  input: Record<string, unknown>,
  functions: typeof backupFunctions = backupFunctions,
) {
  const published: PublishedMessage[] = [];
  const result = await runLocalStateMachine({
    definition: "backup.asl.json",
    functions,
    substitutions: { OnCallTopicArn: onCallTopicArn },
    input,
    retryIntervalMs: 0,
    onPublish: (message) => published.push(message),
  });
  const entered = result.states.filter((event) => event.type === "entered").map((event) => event.state);
  const retried = (state: string) =>
    result.states.filter((event) => event.type === "retried" && event.state === state).length;
  return { ...result, entered, retried, published };
}
