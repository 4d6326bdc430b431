// The SNS topics, on-call and the restore approvers': each KMS-encrypted with a key of its own (CloudWatch
// alarms must be allowed to use the on-call one, and get nothing on the snapshot key), TLS only,
// optional e-mail subscriptions.
import { ArnFormat, RemovalPolicy, Stack } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import { Construct } from "constructs";

export interface OnCallTopicProps {
  /** Addresses subscribed by e-mail (each must confirm the subscription). */
  emails?: readonly string[];
}

export interface NotificationTopicProps extends OnCallTopicProps {
  displayName: string;
  /** What the topic's key is for, as its description. */
  keyDescription: string;
  /** Let this account's CloudWatch alarms publish (key and topic policy). */
  acceptAlarms: boolean;
}

export class NotificationTopic extends Construct {
  readonly key: kms.Key;
  readonly topic: sns.Topic;

  constructor(scope: Construct, id: string, props: NotificationTopicProps) {
    super(scope, id);
    const stack = Stack.of(this);

    this.key = new kms.Key(this, "Key", {
      description: props.keyDescription,
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.topic = new sns.Topic(this, "Topic", {
      displayName: props.displayName,
      masterKey: this.key,
      enforceSSL: true,
    });
    if (props.acceptAlarms) this.acceptAlarms(stack);
    for (const email of props.emails ?? []) {
      this.topic.addSubscription(new subscriptions.EmailSubscription(email));
    }
  }

  private acceptAlarms(stack: Stack): void {
    // Alarms publish as the CloudWatch service, which needs the key itself (an AWS managed key won't do).
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "AllowAlarmsToPublishEncrypted",
        principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["kms:Decrypt", "kms:GenerateDataKey"],
        resources: ["*"],
      }),
    );

    // The topic policy replaces SNS's default one, so CloudWatch alarms of this account are let in explicitly.
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "AllowAlarmsOfThisAccount",
        principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["sns:Publish"],
        resources: [this.topic.topicArn],
        conditions: {
          ArnLike: {
            "aws:SourceArn": stack.formatArn({
              service: "cloudwatch",
              resource: "alarm",
              resourceName: "*",
              arnFormat: ArnFormat.COLON_RESOURCE_NAME,
            }),
          },
          StringEquals: { "aws:SourceAccount": stack.account },
        },
      }),
    );
  }

  /** Lets a role publish: sns:Publish on the topic and the two key operations SNS needs for it. */
  grantPublish(grantee: iam.IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ["sns:Publish"], resources: [this.topic.topicArn] }),
    );
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ["kms:Decrypt", "kms:GenerateDataKey"],
        resources: [this.key.keyArn],
      }),
    );
  }
}

/** Where on-call hears of failed runs and stale backups; CloudWatch alarms publish here. */
export class OnCallTopic extends NotificationTopic {
  constructor(scope: Construct, id: string, props: OnCallTopicProps = {}) {
    super(scope, id, {
      ...props,
      displayName: "etcd-backup on-call",
      keyDescription: "etcd-backup: encrypts on-call notifications (SNS)",
      acceptAlarms: true,
    });
  }
}
