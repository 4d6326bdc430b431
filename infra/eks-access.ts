// How the functions that reach an EKS-hosted etcd get into the cluster: an EKS access entry per cluster
// and role, mapping the role to the Kubernetes group `etcd-backup` and to no access policy. What that
// group may do is RBAC inside the cluster (infra/kubernetes/etcd-backup-rbac.yaml: list and get pods,
// exec and port-forward, in the etcd namespace only), which the cluster's operator applies: EKS access
// policies cannot grant pods/exec or pods/portforward without far more besides. The restore's pod executor
// roles are mapped the same way to a group of their own, `etcd-backup-restore`
// (deploy/rbac/etcd-backup-restore-rbac.yaml: create and delete pods and secrets in the agent namespace).
import { Annotations, Aws, CfnCondition, Fn, Stack, Token } from "aws-cdk-lib";
import * as eks from "aws-cdk-lib/aws-eks";
import type * as iam from "aws-cdk-lib/aws-iam";
import { Construct } from "constructs";
import type { Target } from "../lambdas/core/config/target-config.js";

/** The Kubernetes group the access entries map the functions' roles to. */
export const kubernetesGroup = "etcd-backup";

/** The restore's pod executor's group (deploy/rbac/etcd-backup-restore-rbac.yaml), not the backup's. */
export const restoreKubernetesGroup = "etcd-backup-restore";

export interface EksAccessEntriesProps {
  targets: readonly Target[];
  /** Roles of the functions that talk to the Kubernetes API. */
  roles: Record<string, iam.IRole>;
  /** The group they are mapped to: `etcd-backup`, or the restore's own `etcd-backup-restore`. */
  kubernetesGroup?: string;
}

export class EksAccessEntries extends Construct {
  readonly entries: eks.CfnAccessEntry[] = [];

  constructor(scope: Construct, id: string, props: EksAccessEntriesProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const group = props.kubernetesGroup ?? kubernetesGroup;
    const clusters = new Map<string, { clusterName: string; region: string }>();
    for (const target of props.targets) {
      const { access } = target;
      // With roleArn, EKS sees the assumed role, which its own account maps; nothing to create here.
      if (access.kind !== "eks" || access.roleArn) continue;
      clusters.set(`${access.region}/${access.clusterName}`, {
        clusterName: access.clusterName,
        region: access.region,
      });
    }
    for (const [key, { clusterName, region }] of clusters) {
      if (!Token.isUnresolved(stack.region) && stack.region !== region) {
        Annotations.of(this).addWarningV2(
          "etcd-backup:eks-access-entry-other-region",
          `EKS cluster ${key} is not in this stack's region: map the backup roles into it yourself (an access entry in its region, kubernetes group "${group}").`,
        );
        continue;
      }
      // An environment-agnostic stack learns its region at deployment: the entry exists only there.
      const condition = Token.isUnresolved(stack.region)
        ? new CfnCondition(this, `InRegion-${region}-${clusterName}`, {
            expression: Fn.conditionEquals(Aws.REGION, region),
          })
        : undefined;
      for (const [name, role] of Object.entries(props.roles)) {
        const entry = new eks.CfnAccessEntry(this, `${clusterName}-${region}-${name}`, {
          clusterName,
          principalArn: role.roleArn,
          type: "STANDARD",
          kubernetesGroups: [group],
        });
        if (condition) entry.cfnOptions.condition = condition;
        this.entries.push(entry);
      }
    }
  }
}
