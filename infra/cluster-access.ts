// What reaching the named clusters takes, read from the targets file: the only secrets, EKS clusters and
// roles the backup functions may use. Nothing outside this list is ever granted.
import { ArnFormat, type Stack } from "aws-cdk-lib";
import type { TargetsFile } from "../lambdas/core/config/target-config.js";

export interface ClusterAccess {
  /** Target names: the key prefixes and catalogue partitions the functions may touch. */
  clusters: string[];
  /** Secrets Manager ARNs (kubeconfig, etcd client TLS) as IAM resources. */
  secretArns: string[];
  /** EKS clusters whose endpoint and CA the functions may describe. */
  eksClusterArns: string[];
  /** Roles assumed to reach a cluster (access.roleArn). */
  assumedRoleArns: string[];
}

export function clusterAccessOf(stack: Stack, targets: TargetsFile): ClusterAccess {
  const secretArns = new Set<string>();
  const eksClusterArns = new Set<string>();
  const assumedRoleArns = new Set<string>();
  for (const target of targets.targets) {
    const secrets = [
      target.etcd.tlsSecretArn,
      target.access.kind === "kubeconfig" ? target.access.secretArn : undefined,
    ];
    for (const secret of secrets) {
      if (secret) for (const arn of secretResourceArns(secret)) secretArns.add(arn);
    }
    const { access } = target;
    if (access.kind === "eks") {
      if (access.roleArn) {
        // The assumed role is what EKS authorizes; describing the cluster happens under it, not here.
        assumedRoleArns.add(access.roleArn);
      } else {
        eksClusterArns.add(
          stack.formatArn({
            service: "eks",
            region: access.region,
            resource: "cluster",
            resourceName: access.clusterName,
            arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
          }),
        );
      }
    }
  }
  return {
    clusters: targets.targets.map((target) => target.name),
    secretArns: [...secretArns],
    eksClusterArns: [...eksClusterArns],
    assumedRoleArns: [...assumedRoleArns],
  };
}

/**
 * A secret's complete ARN ends in `-` and six random characters that a name cannot be told apart from
 * (`etcd-client` could be either), so both forms are granted: the ARN as given, and the ARN followed by
 * `-??????`, which matches that one secret whatever its suffix — never a prefix of other names.
 */
export function secretResourceArns(arn: string): string[] {
  return [arn, `${arn}-??????`];
}
