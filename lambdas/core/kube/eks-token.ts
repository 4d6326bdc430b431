// The bearer token EKS accepts, built exactly as `aws eks get-token` builds it: a presigned STS
// GetCallerIdentity URL whose signature covers `x-k8s-aws-id: <cluster>`, as "k8s-aws-v1." + unpadded
// base64url. The API server's authenticator replays the URL to STS, so the token is only as valid as
// the credentials that signed it, and for 15 minutes from X-Amz-Date.
import { AssumeRoleCommand, STSClient } from "@aws-sdk/client-sts";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";
import { Hash } from "@smithy/hash-node";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import {
  describeError,
  type EtcdBackupError,
  InvalidInputError,
  KubernetesAccessDeniedError,
  KubernetesApiError,
} from "../errors.js";

export const eksTokenPrefix = "k8s-aws-v1.";
/** The header whose signed value binds a token to one cluster. */
export const clusterIdHeader = "x-k8s-aws-id";
/** STS ignores it, but the authenticator requires it to lie in [0, 900]; the AWS CLI sends 60. */
export const presignExpiresSeconds = 60;
/** How long the authenticator accepts a token after its X-Amz-Date. */
export const eksTokenLifetimeMs = 15 * 60 * 1000;
/** Clients refresh at 14 minutes; this provider refreshes well before, to leave room for clock skew. */
export const defaultTokenMaxAgeMs = 10 * 60 * 1000;
/** Temporary credentials are renewed this long before they expire: a token dies with its credentials. */
const credentialsRefreshMarginMs = 5 * 60 * 1000;

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
  expiration?: Date | undefined;
}

export type AwsCredentialsProvider = () => Promise<AwsCredentials>;

export interface EksToken {
  token: string;
  /** When the API server stops accepting it (15 minutes after signing, or when the credentials expire). */
  expiresAt: Date;
  signedAt: Date;
}

export interface EksTokenOptions {
  clusterName: string;
  region: string;
  credentials: AwsCredentialsProvider;
  /** Defaults to now; fixed in tests so that the token is deterministic. */
  signingDate?: Date;
}

/** The regional STS endpoint's host; China regions live under amazonaws.com.cn. */
export function stsHostForRegion(region: string): string {
  return `sts.${region}.amazonaws.com${region.startsWith("cn-") ? ".cn" : ""}`;
}

/** One token, signed now (or at `signingDate`). */
export async function createEksToken(options: EksTokenOptions): Promise<EksToken> {
  const { clusterName, region } = options;
  if (!clusterName) throw new InvalidInputError("an EKS token needs the cluster name");
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) {
    throw new InvalidInputError(`"${region}" is not an AWS region (expected e.g. eu-west-1)`);
  }
  const signedAt = options.signingDate ?? new Date();
  const credentials = await options.credentials();
  const host = stsHostForRegion(region);
  const signer = new SignatureV4({
    service: "sts",
    region,
    credentials,
    sha256: Hash.bind(null, "sha256"),
    uriEscapePath: true,
    applyChecksum: false,
  });
  const presigned = await signer.presign(
    new HttpRequest({
      method: "GET",
      protocol: "https:",
      hostname: host,
      path: "/",
      headers: { host, [clusterIdHeader]: clusterName },
      query: { Action: "GetCallerIdentity", Version: "2011-06-15" },
    }),
    { expiresIn: presignExpiresSeconds, signingDate: signedAt },
  );
  const url = `https://${host}/?${encodeQuery(presigned.query ?? {})}`;
  const token = eksTokenPrefix + Buffer.from(url, "utf8").toString("base64url");
  const lifetimeEnd = signedAt.getTime() + eksTokenLifetimeMs;
  const expiresAt = new Date(Math.min(lifetimeEnd, credentials.expiration?.getTime() ?? lifetimeEnd));
  return { token, expiresAt, signedAt };
}

/** The presigned URL inside a token (for diagnostics and tests); throws on anything else. */
export function decodeEksToken(token: string): URL {
  if (!token.startsWith(eksTokenPrefix))
    throw new InvalidInputError(`not an EKS token: no ${eksTokenPrefix}`);
  return new URL(Buffer.from(token.slice(eksTokenPrefix.length), "base64url").toString("utf8"));
}

export interface EksTokenProvider {
  /** A token valid for a while yet: the cached one, or a fresh one. */
  getToken(): Promise<string>;
}

/**
 * Caches a token and signs a new one once it is `maxAgeMs` old or its credentials are about to expire,
 * so that every request of a long backup (status calls after a stream of many minutes) carries a live
 * token. An established WebSocket is not re-authenticated: only requests need a valid token.
 */
export function createEksTokenProvider(
  options: Omit<EksTokenOptions, "signingDate"> & { maxAgeMs?: number; now?: () => Date },
): EksTokenProvider {
  const maxAgeMs = options.maxAgeMs ?? defaultTokenMaxAgeMs;
  if (maxAgeMs <= 0 || maxAgeMs >= 14 * 60 * 1000) {
    throw new InvalidInputError("an EKS token must be refreshed before it is 14 minutes old");
  }
  const now = options.now ?? (() => new Date());
  let current: { token: EksToken; refreshAt: number } | undefined;
  let pending: Promise<string> | undefined;
  return {
    getToken() {
      const time = now().getTime();
      if (current && time < current.refreshAt) return Promise.resolve(current.token.token);
      pending ??= createEksToken({ ...options, signingDate: now() })
        .then((token) => {
          const refreshAt = Math.min(
            token.signedAt.getTime() + maxAgeMs,
            token.expiresAt.getTime() - 60 * 1000,
          );
          current = { token, refreshAt };
          return token.token;
        })
        .finally(() => {
          pending = undefined;
        });
      return pending;
    },
  };
}

export interface CredentialsOptions {
  region: string;
  /** A role to assume first (e.g. one that EKS maps to the backup identity); else the default chain. */
  roleArn?: string | undefined;
  /** The identity that assumes the role; defaults to the SDK's default credential chain. */
  sourceCredentials?: AwsCredentialsProvider;
  /** For tests: the STS client that assumes the role. */
  sts?: STSClient;
  sessionName?: string;
  durationSeconds?: number;
}

/** Credentials for signing: the default chain, or a role assumed with it and renewed before it expires. */
export function createAwsCredentialsProvider(options: CredentialsOptions): AwsCredentialsProvider {
  const source = options.sourceCredentials ?? fromNodeProviderChain();
  if (!options.roleArn) return source;
  const roleArn = options.roleArn;
  const sts = options.sts ?? new STSClient({ region: options.region, credentials: source });
  let cached: AwsCredentials | undefined;
  let pending: Promise<AwsCredentials> | undefined;
  return () => {
    const expiration = cached?.expiration?.getTime();
    if (cached && (expiration === undefined || expiration - Date.now() > credentialsRefreshMarginMs)) {
      return Promise.resolve(cached);
    }
    pending ??= sts
      .send(
        new AssumeRoleCommand({
          RoleArn: roleArn,
          RoleSessionName: options.sessionName ?? "etcd-backup",
          DurationSeconds: options.durationSeconds ?? 3600,
        }),
      )
      .then(
        (reply) => {
          const assumed = reply.Credentials;
          if (!assumed?.AccessKeyId || !assumed.SecretAccessKey) {
            throw new KubernetesAccessDeniedError(`AssumeRole ${roleArn} returned no credentials`);
          }
          cached = {
            accessKeyId: assumed.AccessKeyId,
            secretAccessKey: assumed.SecretAccessKey,
            sessionToken: assumed.SessionToken,
            expiration: assumed.Expiration,
          };
          return cached;
        },
        (error: unknown) => {
          throw classifyAwsError(error, `cannot assume role ${roleArn}`);
        },
      )
      .finally(() => {
        pending = undefined;
      });
    return pending;
  };
}

/**
 * An AWS call on the way to the cluster failed (AssumeRole, DescribeCluster, the credential chain):
 * refusals are not retried, a missing resource is a configuration error, the rest may pass.
 */
export function classifyAwsError(error: unknown, what: string): EtcdBackupError {
  if (error instanceof KubernetesAccessDeniedError || error instanceof InvalidInputError) return error;
  const details = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  const name = details.name ?? "";
  const status = details.$metadata?.httpStatusCode;
  const message = `${what}: ${describeError(error)}`;
  if (
    status === 401 ||
    status === 403 ||
    /AccessDenied|NotAuthorized|UnrecognizedClient|InvalidClientTokenId|ExpiredToken|SignatureDoesNotMatch|CredentialsProviderError/i.test(
      name,
    )
  ) {
    return new KubernetesAccessDeniedError(message, { cause: error });
  }
  if (/ResourceNotFound|NotFound|InvalidParameter|ValidationError|MalformedPolicy/i.test(name)) {
    return new InvalidInputError(message, { cause: error });
  }
  return new KubernetesApiError(message, { cause: error });
}

/** RFC 3986 encoding, as SigV4's canonical query uses it; keys sorted for a stable URL. */
function encodeQuery(query: Record<string, string | string[] | null>): string {
  const escapeRfc3986 = (value: string) =>
    encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const pairs: string[] = [];
  for (const key of Object.keys(query).sort()) {
    const value = query[key];
    if (value === null || value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value])
      pairs.push(`${escapeRfc3986(key)}=${escapeRfc3986(item)}`);
  }
  return pairs.join("&");
}
