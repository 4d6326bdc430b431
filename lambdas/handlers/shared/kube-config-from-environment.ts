// The Kubernetes API access of the steps that reach it (ResolveTarget, TakeSnapshot), apart from the
// other dependencies so that only their bundles carry @kubernetes/client-node and the EKS token code.
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import type { KubeConfig } from "@kubernetes/client-node";
import type { Target } from "../../core/config/target-config.js";
import { InvalidInputError } from "../../core/errors.js";
import { ExpiringCache, secretCacheMs } from "./expiring-cache.js";

/** Per access (EKS cluster or kubeconfig secret): DescribeCluster and the secret, read again after a while. */
const kubeConfigByAccess = new ExpiringCache<KubeConfig>(secretCacheMs);

/**
 * The KubeConfig of an `eks` or `kubeconfig` target, kept for a few minutes (its EKS token provider
 * refreshes the token itself; a rotated kubeconfig secret is read again). The kubeconfig secret holds the kubeconfig text (YAML or JSON).
 */
export function loadKubeConfig(target: Target): Promise<KubeConfig> {
  const access = target.access;
  if (access.kind === "direct") {
    return Promise.reject(
      new InvalidInputError(`target ${target.name} has direct access: no Kubernetes API`),
    );
  }
  // Loaded at the first Kubernetes target, not at import: a direct target's cold start need not
  // evaluate the Kubernetes client.
  return kubeConfigByAccess.get(JSON.stringify(access), () =>
    import("../../core/kube/kube-config.js").then(({ loadKubeConfigForAccess }) =>
      loadKubeConfigForAccess(access, {
        readSecret: async (secretArn) => {
          const reply = await new SecretsManagerClient({}).send(
            new GetSecretValueCommand({ SecretId: secretArn }),
          );
          if (!reply.SecretString) {
            throw new InvalidInputError(
              `secret ${secretArn} holds no text: it must hold the kubeconfig (YAML)`,
            );
          }
          return reply.SecretString;
        },
      }),
    ),
  );
}
