// Snapshot ids sort by time (lexically = chronologically) and object keys group them by cluster and day:
// `<prefix>/<cluster>/<yyyy>/<mm>/<dd>/<snapshotId>.db`.
import { randomBytes } from "node:crypto";
import { InvalidInputError } from "../errors.js";

const snapshotIdPattern = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z-([0-9a-f]{6})$/;
const clusterNamePattern = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** `20261124T193600123Z-3f9a1c`: UTC time to the millisecond, then 24 random bits against collisions. */
export function newSnapshotId(now: Date = new Date(), random: Buffer = randomBytes(3)): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(".", "");
  return `${stamp}-${random.toString("hex").slice(0, 6).padStart(6, "0")}`;
}

/** The time a snapshot id was minted. */
export function snapshotIdTime(snapshotId: string): Date {
  const match = snapshotIdPattern.exec(snapshotId);
  if (!match)
    throw new InvalidInputError(
      `"${snapshotId}" is not a snapshot id (expected e.g. 20261124T193600123Z-3f9a1c)`,
    );
  const [, year, month, day, hour, minute, second, millisecond] = match;
  return new Date(`${year}-${month}-${day}T${hour}:${minute}:${second}.${millisecond}Z`);
}

export function assertClusterName(cluster: string): void {
  if (!clusterNamePattern.test(cluster)) {
    throw new InvalidInputError(
      `cluster name "${cluster}" is invalid: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
    );
  }
}

export function snapshotObjectKey(prefix: string, cluster: string, snapshotId: string): string {
  assertClusterName(cluster);
  const time = snapshotIdTime(snapshotId);
  const day = time.toISOString().slice(0, 10).replace(/-/g, "/");
  const cleanPrefix = prefix.replace(/^\/+|\/+$/g, "");
  return `${cleanPrefix ? `${cleanPrefix}/` : ""}${cluster}/${day}/${snapshotId}.db`;
}
