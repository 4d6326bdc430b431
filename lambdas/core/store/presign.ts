// Presigned S3 URLs (SigV4 query-string authentication) for the restore agents, which reach the snapshot,
// their plan and their status with nothing but curl. @aws-sdk/s3-request-presigner is not a dependency;
// this signs the same way with @smithy/signature-v4: only the host header signed, UNSIGNED-PAYLOAD, the
// path not escaped a second time (S3's rule).
import type { S3Client } from "@aws-sdk/client-s3";
import { Hash } from "@smithy/hash-node";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import { InvalidInputError } from "../errors.js";
import { contentSha256Header, unsignedPayload } from "./unsigned-payload.js";

/** A fixed identity or a provider of one (the SDK's credential chain). */
export type SigningCredentials = ConstructorParameters<typeof SignatureV4>[0]["credentials"];

/** SigV4 presigned URLs live at most a week; a role session's own expiry may cut that shorter. */
export const maxPresignedSeconds = 7 * 24 * 3600;

export interface PresignOptions {
  bucket: string;
  key: string;
  method: "GET" | "PUT";
  /** Pins one object version (GET): sent as the signed query parameter `versionId`. */
  versionId?: string;
  expiresInSeconds: number;
  region: string;
  credentials: SigningCredentials;
  /** A local stand-in (s3rver) or a VPC endpoint; omitted for AWS's own regional endpoint. */
  endpoint?: string;
  /** Address the bucket in the path instead of the host name (always for an endpoint that is an IP). */
  forcePathStyle?: boolean;
  /** The signing time; now unless given (tests). */
  signingDate?: Date;
}

/** RFC 3986 percent-encoding, as SigV4 canonicalizes: encodeURIComponent leaves !'()* alone. */
function escapeUri(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (character) => `%${character.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function isDnsCompatibleBucket(bucket: string): boolean {
  return /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket);
}

export async function presignS3Url(options: PresignOptions): Promise<string> {
  if (
    !Number.isInteger(options.expiresInSeconds) ||
    options.expiresInSeconds < 1 ||
    options.expiresInSeconds > maxPresignedSeconds
  ) {
    throw new InvalidInputError(`a presigned URL must expire within 1 to ${maxPresignedSeconds} seconds`);
  }
  if (options.key === "") throw new InvalidInputError("a presigned URL needs an object key");
  if (options.versionId === "") throw new InvalidInputError("a presigned URL's versionId must not be empty");
  const base = new URL(options.endpoint ?? `https://s3.${options.region}.amazonaws.com`);
  const pathStyle =
    options.forcePathStyle ?? (options.endpoint !== undefined || !isDnsCompatibleBucket(options.bucket));
  const hostname = pathStyle ? base.hostname : `${options.bucket}.${base.hostname}`;
  const encodedKey = options.key.split("/").map(escapeUri).join("/");
  const basePath = base.pathname.replace(/\/$/, "");
  const path = pathStyle
    ? `${basePath}/${escapeUri(options.bucket)}/${encodedKey}`
    : `${basePath}/${encodedKey}`;
  const host = base.port ? `${hostname}:${base.port}` : hostname;

  const request = new HttpRequest({
    method: options.method,
    protocol: base.protocol,
    hostname,
    ...(base.port ? { port: Number(base.port) } : {}),
    path,
    headers: { host, [contentSha256Header]: unsignedPayload },
    // In the query before signing, so the signature covers it: a URL cannot be pointed at another version.
    query: options.versionId === undefined ? {} : { versionId: options.versionId },
  });
  const signer = new SignatureV4({
    service: "s3",
    region: options.region,
    credentials: options.credentials,
    sha256: Hash.bind(null, "sha256"),
    uriEscapePath: false,
    applyChecksum: false,
  });
  const signed = await signer.presign(request, {
    expiresIn: options.expiresInSeconds,
    ...(options.signingDate ? { signingDate: options.signingDate } : {}),
    unsignableHeaders: new Set([contentSha256Header]),
    unhoistableHeaders: new Set([contentSha256Header]),
  });
  const pairs: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(signed.query ?? {})) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (typeof item === "string") pairs.push([name, item]);
    }
  }
  pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const query = pairs.map(([name, value]) => `${escapeUri(name)}=${escapeUri(value)}`).join("&");
  return `${base.protocol}//${host}${path}?${query}`;
}

/** Signs with an S3 client's own credentials and region (the Lambda's role session). */
export async function presignWithClient(
  client: S3Client,
  options: Omit<PresignOptions, "credentials" | "region"> & { region?: string },
): Promise<string> {
  return presignS3Url({
    ...options,
    region: options.region ?? (await client.config.region()),
    credentials: client.config.credentials,
  });
}
