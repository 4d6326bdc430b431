// The approved restore: one Lambda function per step of statemachine/restore.asl.json, each with a role
// of its own and separate from the backup functions' (restore is the more privileged identity), the
// approvers' topic, and the state machine deployed from that file. The state machine starts the backup
// state machine for the safety snapshot and runs the node agents through Systems Manager, or (pod
// executor) as pods that two functions of its own create and remove through the Kubernetes API.
import { join } from "node:path";
import { Stack } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import type * as logs from "aws-cdk-lib/aws-logs";
import type * as sfn from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import type { Target } from "../lambdas/core/config/target-config.js";
import { freeSpaceProbeSeconds } from "../lambdas/core/restore/member-free-space.js";
import { agentExecutionTimeoutSeconds } from "../lambdas/core/restore/restore-timeouts.js";
import { agentInstancesOf, grantAgentCommands } from "./agent-commands.js";
import { AslStateMachine, executionArnsOf } from "./asl-state-machine.js";
import { type ClusterAccess, clusterAccessOf, secretResourceArns } from "./cluster-access.js";
import { EksAccessEntries, restoreKubernetesGroup } from "./eks-access.js";
import { createFreeSpaceDocument } from "./free-space-document.js";
import type {
  BackupResources,
  LambdaStepFunction,
  RestoreResources,
  StepNetwork,
} from "./lambda-step-function.js";
import { acknowledgeWildcardResources } from "./nag-acknowledgements.js";
import { NotificationTopic, type OnCallTopic } from "./on-call-topic.js";
import { createStepFunctions, smallStep, stepRoles, type WorkflowStep } from "./workflow-steps.js";

/** The steps and what each may touch. Lambda timeouts stay within the ASL's TimeoutSeconds for the state. */
export const restoreSteps: readonly WorkflowStep[] = [
  {
    placeholder: "ValidateRestoreFunctionArn",
    handler: "validate-restore",
    description: "etcd-backup restore: check the snapshot and the cluster before asking for approval",
    // The free-space probe waits up to its bound for the nodes, after the other checks.
    sizing: smallStep(60 + freeSpaceProbeSeconds),
    access: [
      "catalogue",
      "targets",
      "etcd-tls",
      "read-snapshot-versions",
      "find-agent-instances",
      "probe-agent-instances",
    ],
    reachesClusters: true,
  },
  {
    placeholder: "RequestApprovalFunctionArn",
    handler: "request-approval",
    description: "etcd-backup restore: keep the task token and ask the approvers",
    sizing: smallStep(30),
    access: ["approvals", "notify-approvers"],
  },
  {
    placeholder: "AcquireLeaseFunctionArn",
    handler: "acquire-lease",
    description: "etcd-backup restore: take the cluster's lease after approval",
    sizing: smallStep(30),
    access: ["catalogue"],
  },
  {
    placeholder: "WriteRestorePlansFunctionArn",
    handler: "write-restore-plans",
    description: "etcd-backup restore: write each member's plan and presign the agents' URLs",
    sizing: smallStep(60),
    access: ["targets", "read-snapshot-versions", "write-restore-plans", "presign-urls"],
    restoreAgentScript: true,
  },
  {
    placeholder: "StartAgentPodsFunctionArn",
    handler: "start-agent-pods",
    description:
      "etcd-backup restore: create the agent pods (pod executor) and the Secret with their script and URLs",
    sizing: smallStep(60),
    access: ["targets", "agent-pod-clusters"],
    reachesClusters: true,
    restoreAgentScript: true,
  },
  {
    placeholder: "RemoveAgentPodsFunctionArn",
    handler: "remove-agent-pods",
    description: "etcd-backup restore: delete the agent pods and their Secret (pod executor), best effort",
    sizing: smallStep(60),
    access: ["targets", "agent-pod-clusters"],
    reachesClusters: true,
  },
  {
    placeholder: "SetRestorePhaseFunctionArn",
    handler: "set-restore-phase",
    description:
      "etcd-backup restore: move every member's plan to the next barrier phase, renewing the agents' URLs",
    sizing: smallStep(60),
    access: ["targets", "read-restore-plans", "write-restore-plans", "presign-urls"],
  },
  {
    placeholder: "CheckRestoreAgentsFunctionArn",
    handler: "check-restore-agents",
    description: "etcd-backup restore: read the agents' status objects at a barrier",
    sizing: smallStep(60),
    access: ["targets", "read-restore-plans"],
  },
  {
    placeholder: "CheckEtcdHealthFunctionArn",
    handler: "check-etcd-health",
    description:
      "etcd-backup restore: check members, leader, revision and key count before the API servers start",
    sizing: smallStep(60),
    access: ["targets", "etcd-tls"],
    reachesClusters: true,
  },
  {
    placeholder: "ComposeRestoreMessageFunctionArn",
    handler: "compose-restore-message",
    description: "etcd-backup restore: release the lease on failure and word the outcome for on-call",
    sizing: smallStep(60),
    access: ["catalogue"],
  },
  {
    placeholder: "ReleaseLeaseFunctionArn",
    handler: "release-lease",
    description: "etcd-backup restore: give the cluster's lease back",
    sizing: smallStep(30),
    access: ["catalogue"],
  },
];

/**
 * What the pod executor's functions may use to reach a Kubernetes API: the access of the targets whose
 * agents run as pods, without their etcd TLS secrets (those functions never reach etcd).
 */
export function agentPodClusterAccess(stack: Stack, targets: readonly Target[]): ClusterAccess {
  const podTargets = targets
    .filter((target) => target.restore?.executor === "pod")
    .map((target) => ({ ...target, etcd: { ...target.etcd, tlsSecretArn: undefined } }));
  return clusterAccessOf(stack, { prefix: "", targets: podTargets });
}

export interface RestoreWorkflowProps {
  resources: BackupResources;
  targets: readonly Target[];
  onCall: OnCallTopic;
  /** The backup state machine, started for the safety snapshot. */
  backupStateMachine: sfn.IStateMachine;
  /** Addresses subscribed to the approvers' topic. */
  approverEmails?: readonly string[];
  projectRoot: string;
  handlersDirectory: string;
  logRetention: logs.RetentionDays;
  network?: StepNetwork;
  /** Map the pod executor's function roles into the pod-executor EKS clusters (default true). */
  eksAccessEntries?: boolean;
}

export class RestoreWorkflow extends Construct {
  readonly functions: Record<string, LambdaStepFunction>;
  readonly approvers: NotificationTopic;
  readonly stateMachine: sfn.StateMachine;
  /** The clusters with a restore layout, whose restores write under `<prefix>/<cluster>/_restores/`. */
  readonly restorableClusters: string[];

  constructor(scope: Construct, id: string, props: RestoreWorkflowProps) {
    super(scope, id);
    const restorable = props.targets.filter((target) => target.restore);
    this.restorableClusters = restorable.map((target) => target.name);
    this.approvers = new NotificationTopic(this, "Approvers", {
      displayName: "etcd-backup restore approvers",
      keyDescription: "etcd-backup: encrypts restore approval requests (SNS)",
      acceptAlarms: false,
      emails: props.approverEmails ?? [],
    });
    const restore: RestoreResources = {
      restorableClusters: this.restorableClusters,
      etcdTlsSecretArns: [
        ...new Set(
          restorable.flatMap((target) =>
            target.etcd.tlsSecretArn ? secretResourceArns(target.etcd.tlsSecretArn) : [],
          ),
        ),
      ],
      approvers: this.approvers,
      agentPodClusterAccess: agentPodClusterAccess(Stack.of(this), props.targets),
      stagedRestoreTools: restorable.some((target) => target.restore?.toolObject),
      agentInstances: agentInstancesOf(props.targets),
    };
    const { ids, tags } = restore.agentInstances;
    if (ids.length > 0 || tags.length > 0) restore.freeSpaceDocument = createFreeSpaceDocument(this);

    this.functions = createStepFunctions(this, restoreSteps, {
      resources: props.resources,
      restore,
      ...(props.network ? { network: props.network } : {}),
      projectRoot: props.projectRoot,
      handlersDirectory: props.handlersDirectory,
      logRetention: props.logRetention,
    });

    const podTargets = props.targets.filter((target) => target.restore?.executor === "pod");
    if ((props.eksAccessEntries ?? true) && podTargets.length > 0) {
      new EksAccessEntries(this, "EksAccess", {
        targets: podTargets,
        kubernetesGroup: restoreKubernetesGroup,
        roles: stepRoles(this.functions, restoreSteps, (step) => step.access.includes("agent-pod-clusters")),
      });
    }

    const machine = new AslStateMachine(this, "Restore", {
      definitionFile: join(props.projectRoot, "statemachine", "restore.asl.json"),
      functions: Object.fromEntries(
        Object.entries(this.functions).map(([name, step]) => [name, step.function]),
      ),
      values: {
        OnCallTopicArn: props.onCall.topic.topicArn,
        BackupStateMachineArn: props.backupStateMachine.stateMachineArn,
        AgentExecutionTimeoutSeconds: String(agentExecutionTimeoutSeconds),
      },
      logRetention: props.logRetention,
      grant: (role) => {
        props.onCall.grantPublish(role);
        grantSafetySnapshot(this, role, props.backupStateMachine);
        // DescribeAgentCommands_abort reads each agent's invocation after an abort, for the notice.
        grantAgentCommands(this, role, restore.agentInstances);
      },
    });
    this.stateMachine = machine.stateMachine;
  }
}

/**
 * What `states:startExecution.sync:2` needs: start the backup state machine, follow and stop its
 * executions, and the managed EventBridge rule through which Step Functions learns that they ended.
 */
function grantSafetySnapshot(scope: Construct, role: iam.IRole, backup: sfn.IStateMachine): void {
  const stack = Stack.of(scope);
  const executions = executionArnsOf(scope, backup);
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({ actions: ["states:StartExecution"], resources: [backup.stateMachineArn] }),
  );
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ["states:DescribeExecution", "states:StopExecution"],
      resources: [executions],
    }),
  );
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      actions: ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
      resources: [
        stack.formatArn({
          service: "events",
          resource: "rule",
          resourceName: "StepFunctionsGetEventsForStepFunctionsExecutionRule",
        }),
      ],
    }),
  );
  acknowledgeWildcardResources(
    scope,
    [executions],
    "Execution names of the safety snapshot are chosen at run time: the grant is DescribeExecution/StopExecution on the executions of the backup state machine only (what .sync:2 needs to follow them).",
  );
}
