// One KubeConfig from each access kind: EKS (DescribeCluster mocked, the token on every request) and
// kubeconfig text (contexts, secrets that must be self-contained, EKS exec plugins replaced), and the
// Kubernetes API's failures as named errors.
import { DescribeClusterCommand, EKSClient } from "@aws-sdk/client-eks";
import { AssumeRoleCommand, STSClient } from "@aws-sdk/client-sts";
import { KubeConfig } from "@kubernetes/client-node";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  InvalidInputError,
  KubernetesAccessDeniedError,
  KubernetesApiError,
} from "../../lambdas/core/errors.js";
import { listPods } from "../../lambdas/core/kube/core-v1-api.js";
import { type AwsCredentials, decodeEksToken } from "../../lambdas/core/kube/eks-token.js";
import { kubernetesApiFailure } from "../../lambdas/core/kube/kube-api-failure.js";
import {
  createEksKubeConfig,
  kubeConfigFromText,
  loadKubeConfigForAccess,
} from "../../lambdas/core/kube/kube-config.js";
import { KubeRequestError } from "../../lambdas/core/kube/kube-request.js";
import { findFreePort } from "../support/free-port.js";

const eks = mockClient(EKSClient);
const sts = mockClient(STSClient);
afterEach(() => {
  eks.reset();
  sts.reset();
});
afterAll(() => {
  eks.restore();
  sts.restore();
});

const credentials: AwsCredentials = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" };
const caData = Buffer.from("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").toString(
  "base64",
);
const endpoint = "https://0123456789ABCDEF.gr7.eu-west-1.eks.amazonaws.com";

async function authorizationOf(config: KubeConfig): Promise<string | undefined> {
  const options: { headers?: Record<string, string> } = {};
  await config.applyToHTTPSOptions(options as Parameters<KubeConfig["applyToHTTPSOptions"]>[0]);
  return options.headers?.Authorization;
}

function eksClient() {
  return new EKSClient({ region: "eu-west-1", credentials });
}

describe("createEksKubeConfig", () => {
  it("takes the endpoint and CA from DescribeCluster and puts an EKS token for that cluster on each request", async () => {
    eks.on(DescribeClusterCommand, { name: "prod" }).resolves({
      cluster: { name: "prod", status: "ACTIVE", endpoint, certificateAuthority: { data: caData } },
    });
    const config = await createEksKubeConfig({
      clusterName: "prod",
      region: "eu-west-1",
      credentials: async () => credentials,
      eks: eksClient(),
    });
    expect(config.getCurrentCluster()).toMatchObject({ server: endpoint, caData, skipTLSVerify: false });
    const authorization = await authorizationOf(config);
    expect(authorization).toMatch(/^Bearer k8s-aws-v1\.[A-Za-z0-9_-]+$/);
    const url = decodeEksToken((authorization as string).slice("Bearer ".length));
    expect(url.host).toBe("sts.eu-west-1.amazonaws.com");
    expect(url.searchParams.get("X-Amz-SignedHeaders")).toBe("host;x-k8s-aws-id");
    expect(eks.commandCalls(DescribeClusterCommand)).toHaveLength(1);
  });

  it("asks the token provider on every request, so a long backup gets fresh tokens", async () => {
    eks.on(DescribeClusterCommand).resolves({
      cluster: { status: "ACTIVE", endpoint, certificateAuthority: { data: caData } },
    });
    let issued = 0;
    const config = await createEksKubeConfig({
      clusterName: "prod",
      region: "eu-west-1",
      credentials: async () => credentials,
      eks: eksClient(),
      tokenProvider: { getToken: async () => `token-${++issued}` },
    });
    expect(await authorizationOf(config)).toBe("Bearer token-1");
    expect(await authorizationOf(config)).toBe("Bearer token-2");
  });

  it("names a cluster that does not exist, a refused call and a cluster that is not ready", async () => {
    eks.on(DescribeClusterCommand).rejects(
      Object.assign(new Error("No cluster found for name: nope."), {
        name: "ResourceNotFoundException",
        $metadata: { httpStatusCode: 404 },
      }),
    );
    const attempt = () =>
      createEksKubeConfig({
        clusterName: "nope",
        region: "eu-west-1",
        credentials: async () => credentials,
        eks: eksClient(),
      });
    await expect(attempt()).rejects.toThrow(InvalidInputError);
    await expect(attempt()).rejects.toThrow(
      /cannot describe EKS cluster nope in eu-west-1.*No cluster found/,
    );

    eks.reset();
    eks.on(DescribeClusterCommand).rejects(
      Object.assign(new Error("not authorized to perform: eks:DescribeCluster"), {
        name: "AccessDeniedException",
        $metadata: { httpStatusCode: 403 },
      }),
    );
    await expect(attempt()).rejects.toThrow(KubernetesAccessDeniedError);

    eks.reset();
    eks.on(DescribeClusterCommand).resolves({ cluster: { status: "CREATING" } });
    await expect(attempt()).rejects.toThrow(KubernetesApiError);
    await expect(attempt()).rejects.toThrow(/no API endpoint or CA yet \(status CREATING\)/);
  });
});

describe("loadKubeConfigForAccess", () => {
  it("eks with a role: DescribeCluster and the token are signed with the assumed role's credentials", async () => {
    sts.on(AssumeRoleCommand).resolves({
      Credentials: {
        AccessKeyId: "ASIAROLE",
        SecretAccessKey: "role-secret",
        SessionToken: "role-session",
        Expiration: new Date(Date.now() + 3600_000),
      },
    });
    eks.on(DescribeClusterCommand).resolves({
      cluster: { status: "ACTIVE", endpoint, certificateAuthority: { data: caData } },
    });
    const signingCredentials: unknown[] = [];
    const config = await loadKubeConfigForAccess(
      {
        kind: "eks",
        clusterName: "prod",
        region: "eu-west-1",
        roleArn: "arn:aws:iam::123456789012:role/backup",
      },
      {
        readSecret: () => Promise.reject(new Error("not used")),
        createEksClient: (region, roleCredentials) => {
          signingCredentials.push(roleCredentials);
          return new EKSClient({ region, credentials: roleCredentials });
        },
      },
    );
    const url = decodeEksToken(((await authorizationOf(config)) as string).slice("Bearer ".length));
    expect(url.searchParams.get("X-Amz-Credential")).toMatch(/^ASIAROLE\//);
    expect(url.searchParams.get("X-Amz-Security-Token")).toBe("role-session");
    expect(sts.commandCalls(AssumeRoleCommand)[0]?.args[0].input.RoleArn).toBe(
      "arn:aws:iam::123456789012:role/backup",
    );
    expect(signingCredentials).toHaveLength(1);
  });

  it("kubeconfig: reads the secret and uses its context", async () => {
    const config = await loadKubeConfigForAccess(
      { kind: "kubeconfig", secretArn: "arn:aws:secretsmanager:eu-west-1:1:secret:kc", context: "second" },
      { readSecret: async () => kubeconfig({ token: "inline-token" }) },
    );
    expect(config.getCurrentContext()).toBe("second");
    expect(config.getCurrentCluster()?.server).toBe("https://second.example:6443");
    expect(await authorizationOf(config)).toBe("Bearer inline-token");
  });

  it("kubeconfig: a secret that cannot be read is an access error, not a crash", async () => {
    await expect(
      loadKubeConfigForAccess(
        { kind: "kubeconfig", secretArn: "arn:aws:secretsmanager:eu-west-1:1:secret:kc" },
        {
          readSecret: () =>
            Promise.reject(
              Object.assign(new Error("denied"), {
                name: "AccessDeniedException",
                $metadata: { httpStatusCode: 400 },
              }),
            ),
        },
      ),
    ).rejects.toThrow(KubernetesAccessDeniedError);
  });
});

function kubeconfig(
  user: Record<string, unknown>,
  options: { current?: string; caFile?: boolean } = {},
): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "first",
        cluster: {
          server: "https://first.example:6443",
          ...(options.caFile
            ? { "certificate-authority": "ca.crt" }
            : { "certificate-authority-data": caData }),
        },
      },
      {
        name: "second",
        cluster: { server: "https://second.example:6443", "certificate-authority-data": caData },
      },
      { name: "eks", cluster: { server: endpoint, "certificate-authority-data": caData } },
    ],
    contexts: [
      { name: "first", context: { cluster: "first", user: "user" } },
      { name: "second", context: { cluster: "second", user: "user" } },
      { name: "eks", context: { cluster: "eks", user: "user" } },
    ],
    "current-context": options.current ?? "first",
    users: [{ name: "user", user }],
  });
}

describe("kubeConfigFromText", () => {
  it("uses the current context, or the one given, and names the known ones when it does not exist", () => {
    const origin = "test";
    expect(kubeConfigFromText(kubeconfig({ token: "t" }), { origin }).getCurrentCluster()?.server).toBe(
      "https://first.example:6443",
    );
    expect(() => kubeConfigFromText(kubeconfig({ token: "t" }), { origin, context: "third" })).toThrow(
      'kubeconfig test has no context "third" (known: first, second, eks)',
    );
    expect(() => kubeConfigFromText(kubeconfig({ token: "t" }, { current: "" }), { origin })).toThrow(
      /has no current context/,
    );
    expect(() => kubeConfigFromText("clusters: [", { origin })).toThrow(InvalidInputError);
  });

  it("keeps client certificates embedded in the kubeconfig", async () => {
    const cert = Buffer.from("CERT").toString("base64");
    const key = Buffer.from("KEY").toString("base64");
    const config = kubeConfigFromText(
      kubeconfig({ "client-certificate-data": cert, "client-key-data": key }),
      {
        origin: "test",
        fromSecret: true,
      },
    );
    const options: { cert?: Buffer; key?: Buffer } = {};
    await config.applyToHTTPSOptions(options as Parameters<KubeConfig["applyToHTTPSOptions"]>[0]);
    expect(options.cert?.toString()).toBe("CERT");
    expect(options.key?.toString()).toBe("KEY");
  });

  it("refuses file references in a kubeconfig kept in a secret", () => {
    expect(() =>
      kubeConfigFromText(
        kubeconfig(
          { "client-certificate": "/home/me/cert.pem", "client-key": "/home/me/key.pem" },
          { caFile: true },
        ),
        {
          origin: "secret arn:x",
          fromSecret: true,
        },
      ),
    ).toThrow(
      "kubeconfig secret arn:x refers to files (certificate-authority ca.crt, client-certificate /home/me/cert.pem, client-key /home/me/key.pem): embed them as *-data instead",
    );
  });

  it("replaces `aws eks get-token` in a secret's kubeconfig by the built-in token, for the cluster and region it names", async () => {
    const config = kubeConfigFromText(
      kubeconfig(
        {
          exec: {
            apiVersion: "client.authentication.k8s.io/v1beta1",
            command: "aws",
            args: ["--region", "eu-west-1", "eks", "get-token", "--cluster-name", "prod", "--output", "json"],
          },
        },
        { current: "eks" },
      ),
      { origin: "secret arn:x", fromSecret: true, credentialsFor: () => async () => credentials },
    );
    const url = decodeEksToken(((await authorizationOf(config)) as string).slice("Bearer ".length));
    expect(url.host).toBe("sts.eu-west-1.amazonaws.com");
    expect(url.searchParams.get("X-Amz-Credential")).toMatch(/^AKIDEXAMPLE\/\d{8}\/eu-west-1\/sts\//);
  });

  it("replaces aws-iam-authenticator too, taking the region from the EKS endpoint", async () => {
    const config = kubeConfigFromText(
      kubeconfig(
        { exec: { command: "/usr/local/bin/aws-iam-authenticator", args: ["token", "-i", "prod"] } },
        { current: "eks" },
      ),
      { origin: "secret arn:x", fromSecret: true, credentialsFor: () => async () => credentials },
    );
    expect(decodeEksToken(((await authorizationOf(config)) as string).slice(7)).host).toBe(
      "sts.eu-west-1.amazonaws.com",
    );
  });

  it("refuses other exec plugins in a secret's kubeconfig: nothing can run them in Lambda", () => {
    expect(() =>
      kubeConfigFromText(kubeconfig({ exec: { command: "gke-gcloud-auth-plugin", args: [] } }), {
        origin: "secret arn:x",
        fromSecret: true,
      }),
    ).toThrow(/runs "gke-gcloud-auth-plugin" for its credentials, which cannot run here/);
  });
});

describe("kubernetesApiFailure", () => {
  const config = kubeConfigFromText(kubeconfig({ token: "t" }), { origin: "test" });
  const apiException = (httpStatus: number, message: string) =>
    new KubeRequestError({ kind: "refused", httpStatus, message }, "list pods");

  it("401 and 403 are refusals with the API server's words; 429 and 5xx transient; 404 a wrong name", () => {
    const unauthorized = kubernetesApiFailure(apiException(401, "Unauthorized"), "cannot list pods", config);
    expect(unauthorized).toBeInstanceOf(KubernetesAccessDeniedError);
    expect(unauthorized.message).toBe(
      "cannot list pods: the Kubernetes API at https://first.example:6443 did not accept the credentials (401 Unauthorized); check the token or client certificate, or for EKS the access entry of the identity",
    );
    const forbidden = kubernetesApiFailure(
      apiException(403, 'pods is forbidden: User "x" cannot list resource "pods"'),
      "cannot list pods",
      config,
    );
    expect(forbidden).toBeInstanceOf(KubernetesAccessDeniedError);
    expect(forbidden.message).toContain('User "x" cannot list resource "pods"');
    expect(kubernetesApiFailure(apiException(429, "slow down"), "x", config)).toBeInstanceOf(
      KubernetesApiError,
    );
    expect(kubernetesApiFailure(apiException(503, "etcdserver: leader changed"), "x", config)).toBeInstanceOf(
      KubernetesApiError,
    );
    expect(kubernetesApiFailure(apiException(404, 'namespaces "x" not found'), "x", config)).toBeInstanceOf(
      InvalidInputError,
    );
  });

  it("a network failure is transient and says why", async () => {
    const port = await findFreePort();
    const unreachable = new KubeConfig();
    unreachable.loadFromOptions({
      clusters: [{ name: "c", server: `https://127.0.0.1:${port}` }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    const error = await listPods(unreachable, "kube-system", "component=etcd").catch((caught) => caught);
    const failure = kubernetesApiFailure(error, "cannot list pods", unreachable);
    expect(failure).toBeInstanceOf(KubernetesApiError);
    expect(failure.transient).toBe(true);
    expect(failure.message).toBe(
      `cannot list pods: the Kubernetes API at https://127.0.0.1:${port} cannot be reached: ECONNREFUSED connect ECONNREFUSED 127.0.0.1:${port}`,
    );
  });
});
