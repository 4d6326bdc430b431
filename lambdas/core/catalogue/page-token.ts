// The opaque `nextToken` of a snapshot listing: the base64url JSON of the table key (`cluster`, `sk`) to
// continue after, checked on the way back in so that a token cannot wander into another cluster.
import { InvalidInputError } from "../errors.js";
import { SortKeyPrefixes } from "./catalogue-table.js";

export interface SnapshotPageKey {
  cluster: string;
  sk: string;
}

export function encodePageToken(key: SnapshotPageKey): string {
  return Buffer.from(JSON.stringify({ cluster: key.cluster, sk: key.sk }), "utf8").toString("base64url");
}

/** Decodes a token and checks that it continues a listing of this cluster's snapshots. */
export function decodePageToken(token: string, cluster: string): SnapshotPageKey {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch (error) {
    throw new InvalidInputError("nextToken is not a token this catalogue issued", { cause: error });
  }
  const fields = typeof decoded === "object" && decoded !== null ? (decoded as Record<string, unknown>) : {};
  const tokenCluster = fields.cluster;
  const tokenSortKey = fields.sk;
  if (typeof tokenCluster !== "string" || typeof tokenSortKey !== "string") {
    throw new InvalidInputError("nextToken is not a token this catalogue issued");
  }
  if (tokenCluster !== cluster) {
    throw new InvalidInputError(`nextToken belongs to a listing of cluster ${tokenCluster}, not ${cluster}`);
  }
  if (!tokenSortKey.startsWith(SortKeyPrefixes.snapshot)) {
    throw new InvalidInputError("nextToken does not point into a snapshot listing");
  }
  return { cluster: tokenCluster, sk: tokenSortKey };
}
