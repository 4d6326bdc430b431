// Builds DynamoDB update and condition expressions. Every attribute is referred to as `#name` (many of
// ours — status, key, bytes, owner — are reserved words), and the name map is derived from the
// expressions themselves, so a placeholder can never be left without its name.

export interface ConditionalUpdate {
  UpdateExpression: string;
  ConditionExpression?: string;
  ExpressionAttributeNames: Record<string, string>;
  ExpressionAttributeValues?: Record<string, unknown>;
}

export interface UpdateChanges {
  /** Attributes to set; an `undefined` value is left out (neither set nor removed). */
  set?: Record<string, unknown>;
  remove?: readonly string[];
  /** A condition written with `#attribute` names and `:value` placeholders given in `conditionValues`. */
  condition?: string;
  conditionValues?: Record<string, unknown>;
}

const attributeNamePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;
const setValuePrefix = ":set_";

export function buildConditionalUpdate(changes: UpdateChanges): ConditionalUpdate {
  const setEntries = Object.entries(changes.set ?? {}).filter(([, value]) => value !== undefined);
  const remove = changes.remove ?? [];
  for (const name of [...setEntries.map(([name]) => name), ...remove]) assertAttributeName(name);
  const removedAndSet = remove.filter((name) => setEntries.some(([setName]) => setName === name));
  if (removedAndSet.length > 0)
    throw new Error(`attributes both set and removed: ${removedAndSet.join(", ")}`);

  const clauses: string[] = [];
  if (setEntries.length > 0) {
    clauses.push(`SET ${setEntries.map(([name]) => `#${name} = ${setValuePrefix}${name}`).join(", ")}`);
  }
  if (remove.length > 0) clauses.push(`REMOVE ${remove.map((name) => `#${name}`).join(", ")}`);
  if (clauses.length === 0) throw new Error("an update must set or remove at least one attribute");
  const updateExpression = clauses.join(" ");

  const values: Record<string, unknown> = {};
  for (const [name, value] of setEntries) values[`${setValuePrefix}${name}`] = value;
  for (const [placeholder, value] of Object.entries(changes.conditionValues ?? {})) {
    if (!placeholder.startsWith(":") || placeholder.startsWith(setValuePrefix)) {
      throw new Error(
        `condition value placeholder ${placeholder} must start with ":" and not "${setValuePrefix}"`,
      );
    }
    values[placeholder] = value;
  }
  assertValuesUsed(values, [updateExpression, changes.condition]);

  return {
    UpdateExpression: updateExpression,
    ...(changes.condition === undefined ? {} : { ConditionExpression: changes.condition }),
    ExpressionAttributeNames: attributeNamesIn(updateExpression, changes.condition),
    ...(Object.keys(values).length === 0 ? {} : { ExpressionAttributeValues: values }),
  };
}

/** The `ExpressionAttributeNames` for every `#name` placeholder in the given expressions. */
export function attributeNamesIn(...expressions: (string | undefined)[]): Record<string, string> {
  const names: Record<string, string> = {};
  for (const expression of expressions) {
    for (const match of expression?.matchAll(/#([A-Za-z0-9_]+)/g) ?? []) {
      const name = match[1] as string;
      assertAttributeName(name);
      names[`#${name}`] = name;
    }
  }
  return names;
}

/** `(:prefix0, :prefix1, …)` with the matching values, for an `IN` condition. */
export function valueList(
  prefix: string,
  values: readonly unknown[],
): { list: string; values: Record<string, unknown> } {
  if (values.length === 0) throw new Error("an IN list needs at least one value");
  const placeholders = values.map((_, index) => `:${prefix}${index}`);
  return {
    list: `(${placeholders.join(", ")})`,
    values: Object.fromEntries(placeholders.map((placeholder, index) => [placeholder, values[index]])),
  };
}

function assertAttributeName(name: string): void {
  if (!attributeNamePattern.test(name))
    throw new Error(`not a plain attribute name: ${JSON.stringify(name)}`);
}

// DynamoDB rejects a request with a value placeholder no expression uses; fail here, where the cause is clear.
function assertValuesUsed(values: Record<string, unknown>, expressions: (string | undefined)[]): void {
  const used = new Set(expressions.flatMap((expression) => expression?.match(/:[A-Za-z0-9_]+/g) ?? []));
  const unused = Object.keys(values).filter((placeholder) => !used.has(placeholder));
  if (unused.length > 0)
    throw new Error(`value placeholders not used by any expression: ${unused.join(", ")}`);
}
