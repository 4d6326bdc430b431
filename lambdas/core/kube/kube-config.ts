// One KubeConfig (@kubernetes/client-node) for a target, whatever its access kind: EKS (DescribeCluster
// for the endpoint and CA, a refreshing token built as `aws eks get-token` builds it) or a kubeconfig
// (from Secrets Manager for the Lambda functions, or a file for the CLI) with its certificates or token.
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { DescribeClusterCommand, type DescribeClusterCommandOutput, EKSClient } from "@aws-sdk/client-eks";
import { KubeConfig, type User } from "@kubernetes/client-node";
import type { Target } from "../config/target-config.js";
import { EtcdBackupError, InvalidInputError, KubernetesApiError } from "../errors.js";
import {
  type AwsCredentialsProvider,
  type CredentialsOptions,
  classifyAwsError,
  createAwsCredentialsProvider,
  createEksTokenProvider,
  type EksTokenProvider,
} from "./eks-token.js";

export type KubernetesAccess = Exclude<Target["access"], { kind: "direct" }>;

/** The auth-provider name of a user whose bearer token comes from an EksTokenProvider. */
export const eksTokenAuthProviderName = "etcd-backup-eks-token";

type Authenticator = Parameters<KubeConfig["addAuthenticator"]>[0];

/** Puts a fresh EKS token on every request and WebSocket handshake of users marked with our provider. */
class EksTokenAuthenticator implements Authenticator {
  constructor(private readonly tokens: ReadonlyMap<string, EksTokenProvider>) {}

  isAuthProvider(user: User): boolean {
    return (user.authProvider as { name?: string } | null | undefined)?.name === eksTokenAuthProviderName;
  }

  async applyAuthentication(
    user: User,
    options: Parameters<Authenticator["applyAuthentication"]>[1],
  ): Promise<void> {
    const provider = this.tokens.get(user.name);
    if (!provider) throw new InvalidInputError(`no EKS token provider for kubeconfig user ${user.name}`);
    const token = await provider.getToken();
    options.headers = { ...options.headers, Authorization: `Bearer ${token}` };
  }
}

export interface EksKubeConfigOptions {
  clusterName: string;
  region: string;
  roleArn?: string | undefined;
  /** Signs DescribeCluster and the token; defaults to the default chain, or the role assumed with it. */
  credentials?: AwsCredentialsProvider;
  /** For tests: the EKS client (its credentials should be `credentials`). */
  eks?: EKSClient;
  /** For tests: the token provider; defaults to one refreshing tokens signed with `credentials`. */
  tokenProvider?: EksTokenProvider;
}

/** A KubeConfig for an EKS cluster: its endpoint and CA from DescribeCluster, a refreshing token. */
export async function createEksKubeConfig(options: EksKubeConfigOptions): Promise<KubeConfig> {
  const { clusterName, region } = options;
  const credentials =
    options.credentials ?? createAwsCredentialsProvider({ region, roleArn: options.roleArn });
  const eks = options.eks ?? new EKSClient({ region, credentials });
  let cluster: DescribeClusterCommandOutput["cluster"];
  try {
    ({ cluster } = await eks.send(new DescribeClusterCommand({ name: clusterName })));
  } catch (error) {
    throw classifyAwsError(error, `cannot describe EKS cluster ${clusterName} in ${region}`);
  } finally {
    if (!options.eks) eks.destroy();
  }
  const status = cluster?.status;
  if (!cluster?.endpoint || !cluster.certificateAuthority?.data) {
    throw new KubernetesApiError(
      `EKS cluster ${clusterName} in ${region} has no API endpoint or CA yet (status ${status ?? "unknown"})`,
    );
  }
  if (status !== undefined && status !== "ACTIVE" && status !== "UPDATING") {
    throw new KubernetesApiError(`EKS cluster ${clusterName} in ${region} is ${status}, not ACTIVE`);
  }
  const tokenProvider = options.tokenProvider ?? createEksTokenProvider({ clusterName, region, credentials });
  const name = `eks:${region}:${clusterName}`;
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [
      { name, server: cluster.endpoint, caData: cluster.certificateAuthority.data, skipTLSVerify: false },
    ],
    users: [{ name, authProvider: { name: eksTokenAuthProviderName, config: {} } }],
    contexts: [{ name, cluster: name, user: name }],
    currentContext: name,
  });
  config.addAuthenticator(new EksTokenAuthenticator(new Map([[name, tokenProvider]])));
  return config;
}

export interface KubeconfigTextOptions {
  /** Where the text came from, for messages: a file path or a secret ARN. */
  origin: string;
  /** The context to use instead of the current one. */
  context?: string | undefined;
  /**
   * The text came from a secret: file references cannot be followed (the Lambda function has none of
   * those files) and exec plugins cannot run, except `aws eks get-token` and `aws-iam-authenticator
   * token`, which are replaced by the built-in EKS token.
   */
  fromSecret?: boolean;
  /** For a file: the directory relative paths are resolved against. */
  baseDirectory?: string;
  /** For the replaced EKS exec plugins: how credentials are obtained (tests). */
  credentialsFor?: (options: CredentialsOptions) => AwsCredentialsProvider;
}

/** Parses a kubeconfig (YAML or JSON), selects the context, and checks it can be used as it is. */
export function kubeConfigFromText(text: string, options: KubeconfigTextOptions): KubeConfig {
  const config = new KubeConfig();
  try {
    config.loadFromString(text);
  } catch (error) {
    throw new InvalidInputError(
      `kubeconfig ${options.origin} cannot be read: ${(error as Error).message}${
        options.fromSecret ? " (a kubeconfig kept in a secret must embed tokens and certificates)" : ""
      }`,
      { cause: error },
    );
  }
  if (options.baseDirectory) config.makePathsAbsolute(options.baseDirectory);
  if (options.context !== undefined) {
    if (!config.getContextObject(options.context)) {
      const known = config.getContexts().map((context) => context.name);
      throw new InvalidInputError(
        `kubeconfig ${options.origin} has no context "${options.context}" (known: ${known.join(", ") || "none"})`,
      );
    }
    config.setCurrentContext(options.context);
  }
  const contextName = config.getCurrentContext();
  if (!contextName || !config.getContextObject(contextName)) {
    throw new InvalidInputError(
      `kubeconfig ${options.origin} has no current context${contextName ? ` named "${contextName}"` : ""}: give one`,
    );
  }
  const cluster = config.getCurrentCluster();
  if (!cluster?.server) {
    throw new InvalidInputError(
      `kubeconfig ${options.origin}: context "${contextName}" names no cluster with a server`,
    );
  }
  const user = config.getCurrentUser();
  if (options.fromSecret) {
    const files = [
      cluster.caFile && `certificate-authority ${cluster.caFile}`,
      user?.certFile && `client-certificate ${user.certFile}`,
      user?.keyFile && `client-key ${user.keyFile}`,
    ].filter(Boolean);
    if (files.length > 0) {
      throw new InvalidInputError(
        `kubeconfig ${options.origin} refers to files (${files.join(", ")}): embed them as *-data instead`,
      );
    }
    if (user?.exec) replaceEksExecPlugin(config, user, cluster.server, options);
  }
  return config;
}

/** `aws eks get-token` and `aws-iam-authenticator token` as an exec plugin: replaced by our own token. */
function replaceEksExecPlugin(
  config: KubeConfig,
  user: User,
  server: string,
  options: KubeconfigTextOptions,
): void {
  const exec = user.exec as {
    command?: string;
    args?: string[];
    env?: Array<{ name: string; value: string }>;
  };
  const command = (exec.command ?? "").split("/").pop() ?? "";
  const args = exec.args ?? [];
  const flag = (...names: string[]) => {
    for (const [index, arg] of args.entries()) {
      for (const name of names) {
        if (arg === name) return args[index + 1];
        if (arg.startsWith(`${name}=`)) return arg.slice(name.length + 1);
      }
    }
    return undefined;
  };
  const envRegion = exec.env?.find(
    (entry) => entry.name === "AWS_REGION" || entry.name === "AWS_DEFAULT_REGION",
  );
  let clusterName: string | undefined;
  let roleArn: string | undefined;
  if (command === "aws" && args.includes("eks") && args.includes("get-token")) {
    clusterName = flag("--cluster-name");
    roleArn = flag("--role-arn");
  } else if (command === "aws-iam-authenticator" && args.includes("token")) {
    clusterName = flag("-i", "--cluster-id");
    roleArn = flag("-r", "--role");
  } else {
    throw new InvalidInputError(
      `kubeconfig ${options.origin}: user "${user.name}" runs "${exec.command}" for its credentials, which cannot run here: use a token, a client certificate, or access kind "eks"`,
    );
  }
  // The endpoint's host names the region: <id>.<suffix>.<region>.eks.amazonaws.com.
  const region =
    flag("--region") ??
    envRegion?.value ??
    /\.([a-z]{2}(?:-[a-z]+)+-\d+)\.eks\.amazonaws\.com/.exec(server)?.[1];
  if (!clusterName || !region) {
    throw new InvalidInputError(
      `kubeconfig ${options.origin}: user "${user.name}" gets an EKS token but its cluster name or region cannot be read from it`,
    );
  }
  const credentials = (options.credentialsFor ?? createAwsCredentialsProvider)({ region, roleArn });
  const tokenProvider = createEksTokenProvider({ clusterName, region, credentials });
  const replaced: User = { name: user.name, authProvider: { name: eksTokenAuthProviderName, config: {} } };
  config.users = config.users.map((candidate) => (candidate.name === user.name ? replaced : candidate));
  config.addAuthenticator(new EksTokenAuthenticator(new Map([[user.name, tokenProvider]])));
}

/** A kubeconfig file (the CLI's --kubeconfig), with paths relative to its directory. */
export async function kubeConfigFromFile(path: string, context?: string): Promise<KubeConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new InvalidInputError(`cannot read kubeconfig ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return kubeConfigFromText(text, { origin: path, context, baseDirectory: dirname(path) });
}

export interface KubeConfigLoaders {
  /** The SecretString of a Secrets Manager secret. */
  readSecret(secretArn: string): Promise<string>;
  /** For tests: the EKS client, given the region and the credentials it should sign with. */
  createEksClient?: (region: string, credentials: AwsCredentialsProvider) => EKSClient;
  /** For tests: credentials (default chain, or an assumed role). */
  credentialsFor?: (options: CredentialsOptions) => AwsCredentialsProvider;
}

/** The KubeConfig of a target whose access kind is `eks` or `kubeconfig`. */
export async function loadKubeConfigForAccess(
  access: KubernetesAccess,
  loaders: KubeConfigLoaders,
): Promise<KubeConfig> {
  if (access.kind === "eks") {
    const { clusterName, region, roleArn } = access;
    const credentials = (loaders.credentialsFor ?? createAwsCredentialsProvider)({ region, roleArn });
    return createEksKubeConfig({
      clusterName,
      region,
      roleArn,
      credentials,
      eks: loaders.createEksClient?.(region, credentials),
    });
  }
  let text: string;
  try {
    text = await loaders.readSecret(access.secretArn);
  } catch (error) {
    if (error instanceof EtcdBackupError) throw error;
    throw classifyAwsError(error, `cannot read the kubeconfig secret ${access.secretArn}`);
  }
  return kubeConfigFromText(text, {
    origin: `secret ${access.secretArn}`,
    context: access.context,
    fromSecret: true,
    credentialsFor: loaders.credentialsFor,
  });
}
