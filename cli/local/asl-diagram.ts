// Draws a state machine definition (statemachine/*.asl.json) as a Mermaid flowchart for the README.
// A test checks that the README's pictures are the ones this draws from the current definitions.
import { readFile } from "node:fs/promises";
import { join } from "node:path";

interface State {
  Type: string;
  Next?: string;
  Default?: string;
  End?: boolean;
  Choices?: Array<{ Next: string }>;
  Catch?: Array<{ Next: string; ErrorEquals: string[] }>;
  ItemProcessor?: { StartAt: string; States: Record<string, State> };
}

const shapes: Record<string, (id: string, label: string) => string> = {
  Choice: (id, label) => `${id}{${label}}`,
  Succeed: (id, label) => `${id}([${label}])`,
  Fail: (id, label) => `${id}([${label}])`,
  Wait: (id, label) => `${id}[/${label}/]`,
  Map: (id, label) => `${id}[[${label}]]`,
};

export async function drawStateMachine(definitionFile: string): Promise<string> {
  const path = join(import.meta.dirname, "../../statemachine", definitionFile);
  const definition = JSON.parse(await readFile(path, "utf8")) as {
    StartAt: string;
    States: Record<string, State>;
  };
  const id = (name: string) => name.replace(/[^A-Za-z0-9_]/g, "_");
  const lines = ["flowchart TD", `  start((start)) --> ${id(definition.StartAt)}`];
  for (const [name, state] of Object.entries(definition.States)) {
    const shape = shapes[state.Type] ?? ((nodeId: string, label: string) => `${nodeId}[${label}]`);
    lines.push(`  ${shape(id(name), name)}`);
    const next = [state.Next, state.Default, ...(state.Choices ?? []).map((choice) => choice.Next)];
    for (const target of new Set(next.filter((value): value is string => Boolean(value)))) {
      lines.push(`  ${id(name)} --> ${id(target)}`);
    }
    for (const target of new Set((state.Catch ?? []).map((handler) => handler.Next))) {
      lines.push(`  ${id(name)} -. error .-> ${id(target)}`);
    }
  }
  return lines.join("\n");
}

/** The README section between `<!-- diagram:NAME -->` markers, as it should read. */
export async function diagramSection(name: string): Promise<string> {
  return `<!-- diagram:${name} -->\n\`\`\`mermaid\n${await drawStateMachine(`${name}.asl.json`)}\n\`\`\`\n<!-- /diagram:${name} -->`;
}
