// Label selectors (the grammar of apimachinery's labels.Parse: `a=b`, `a==b`, `a!=b`, `a`, `!a`,
// `a in (x,y)`, `a notin (x,y)`, `a>1`, `a<1`) and the equality-based field selectors of pods and secrets.

export class SelectorError extends Error {
  override readonly name = "SelectorError";
}

type Requirement =
  | { key: string; operator: "exists" | "doesNotExist" }
  | { key: string; operator: "in" | "notIn"; values: string[] }
  | { key: string; operator: "gt" | "lt"; value: number };

export type LabelSelector = (labels: Record<string, string>) => boolean;

const keyNamePattern = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const keyPrefixPattern = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const valuePattern = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function validateKey(key: string): void {
  const slash = key.indexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  const validName = name.length <= 63 && keyNamePattern.test(name);
  const validPrefix = prefix === undefined || (prefix.length <= 253 && keyPrefixPattern.test(prefix));
  if (!validName || !validPrefix) {
    throw new SelectorError(
      `unable to parse requirement: key: Invalid value: "${key}": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
    );
  }
}

function validateValue(value: string): void {
  if (value.length > 63 || !valuePattern.test(value)) {
    throw new SelectorError(
      `unable to parse requirement: values[0]: Invalid value: "${value}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
    );
  }
}

type Token =
  | { kind: "identifier"; text: string }
  | { kind: "operator"; text: string }
  | { kind: "end"; text: "" };

function tokenize(input: string): Token[] {
  const tokens: Token[] = [];
  let index = 0;
  while (index < input.length) {
    const char = input[index] as string;
    if (/\s/.test(char)) {
      index++;
      continue;
    }
    const two = input.slice(index, index + 2);
    if (two === "==" || two === "!=") {
      tokens.push({ kind: "operator", text: two });
      index += 2;
      continue;
    }
    if ("=!(),<>".includes(char)) {
      tokens.push({ kind: "operator", text: char });
      index++;
      continue;
    }
    let end = index;
    while (end < input.length && !/[\s=!(),<>]/.test(input[end] as string)) end++;
    tokens.push({ kind: "identifier", text: input.slice(index, end) });
    index = end;
  }
  tokens.push({ kind: "end", text: "" });
  return tokens;
}

export function parseLabelSelector(input: string): LabelSelector {
  const requirements: Requirement[] = [];
  const tokens = tokenize(input);
  let position = 0;
  const peek = () => tokens[position] as Token;
  const next = () => tokens[position++] as Token;
  const describe = (token: Token) => (token.kind === "end" ? "end of string" : token.text);
  const unexpected = (token: Token, expected: string) =>
    new SelectorError(`unable to parse requirement: found '${describe(token)}', expected: ${expected}`);

  if (peek().kind === "end") return () => true;
  for (;;) {
    let negated = false;
    if (peek().text === "!" && peek().kind === "operator") {
      next();
      negated = true;
    }
    const keyToken = next();
    if (keyToken.kind !== "identifier") throw unexpected(keyToken, "identifier");
    const key = keyToken.text;
    validateKey(key);
    const operatorToken = peek();
    if (negated || operatorToken.kind === "end" || operatorToken.text === ",") {
      requirements.push({ key, operator: negated ? "doesNotExist" : "exists" });
    } else {
      next();
      const operator = operatorToken.text;
      if (operator === "=" || operator === "==" || operator === "!=") {
        const valueToken = peek();
        let value = "";
        if (valueToken.kind === "identifier") value = next().text;
        else if (valueToken.kind !== "end" && valueToken.text !== ",")
          throw unexpected(valueToken, "identifier");
        validateValue(value);
        requirements.push({ key, operator: operator === "!=" ? "notIn" : "in", values: [value] });
      } else if (operatorToken.kind === "identifier" && (operator === "in" || operator === "notin")) {
        const open = next();
        if (open.text !== "(") throw unexpected(open, "'('");
        const values: string[] = [];
        for (;;) {
          const token = peek();
          if (token.kind === "identifier") {
            validateValue(token.text);
            values.push(next().text);
          } else {
            values.push("");
          }
          const separator = next();
          if (separator.text === ")") break;
          if (separator.text !== ",") throw unexpected(separator, "',' or ')'");
        }
        requirements.push({ key, operator: operator === "in" ? "in" : "notIn", values });
      } else if (operator === ">" || operator === "<") {
        const valueToken = next();
        const value = Number(valueToken.text);
        if (valueToken.kind !== "identifier" || !/^-?\d+$/.test(valueToken.text)) {
          throw new SelectorError(
            `unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer`,
          );
        }
        requirements.push({ key, operator: operator === ">" ? "gt" : "lt", value });
      } else {
        throw unexpected(operatorToken, "'=', '!=', '==', 'in', notin'");
      }
    }
    const separator = next();
    if (separator.kind === "end") break;
    if (separator.text !== ",") throw unexpected(separator, "',' or 'end of string'");
  }

  return (labels) =>
    requirements.every((requirement) => {
      const has = Object.hasOwn(labels, requirement.key);
      const value = labels[requirement.key];
      switch (requirement.operator) {
        case "exists":
          return has;
        case "doesNotExist":
          return !has;
        case "in":
          return has && requirement.values.includes(value as string);
        case "notIn":
          return !has || !requirement.values.includes(value as string);
        default: {
          if (!has || !/^-?\d+$/.test(value as string)) return false;
          const number = Number(value);
          return requirement.operator === "gt" ? number > requirement.value : number < requirement.value;
        }
      }
    });
}

export type FieldSelector = (fields: Record<string, string>) => boolean;

/** Equality-based field selectors; `supported` lists the fields the resource can be selected by. */
export function parseFieldSelector(input: string, supported: readonly string[]): FieldSelector {
  const terms = input
    .split(",")
    .map((term) => term.trim())
    .filter((term) => term.length > 0)
    .map((term) => {
      const match = /^([^=!]+?)\s*(==|=|!=)\s*(.*)$/.exec(term);
      if (!match) throw new SelectorError(`invalid selector: '${input}'; can't understand '${term}'`);
      const [, field, operator, value] = match as unknown as [string, string, string, string];
      if (!supported.includes(field)) throw new SelectorError(`field label not supported: ${field}`);
      return { field, equal: operator !== "!=", value };
    });
  return (fields) => terms.every((term) => (fields[term.field] === term.value) === term.equal);
}

export const podSelectableFields = [
  "metadata.name",
  "metadata.namespace",
  "spec.nodeName",
  "spec.restartPolicy",
  "spec.schedulerName",
  "spec.serviceAccountName",
  "spec.hostNetwork",
  "status.phase",
  "status.podIP",
  "status.nominatedNodeName",
] as const;

export const secretSelectableFields = ["metadata.name", "metadata.namespace", "type"] as const;

export const eventSelectableFields = [
  "metadata.name",
  "metadata.namespace",
  "involvedObject.kind",
  "involvedObject.namespace",
  "involvedObject.name",
  "involvedObject.uid",
  "involvedObject.apiVersion",
  "involvedObject.resourceVersion",
  "involvedObject.fieldPath",
  "reason",
  "reportingComponent",
  "source",
  "type",
] as const;
