// `--members` and `--keys` of the commands that start the local stack (`demo`, `local up`).
import { InvalidInputError } from "../../lambdas/core/errors.js";

export function parseLocalStackSize(
  flags: { members: string; keys: string },
  minimumKeys: number,
): { members: 1 | 3; keyCount: number } {
  const members = Number(flags.members);
  const keyCount = Number(flags.keys);
  if (members !== 1 && members !== 3) throw new InvalidInputError("--members must be 1 or 3");
  if (!Number.isInteger(keyCount) || keyCount < minimumKeys || keyCount > 1_000_000) {
    throw new InvalidInputError(`--keys must be a whole number from ${minimumKeys} to 1000000`);
  }
  return { members, keyCount };
}
