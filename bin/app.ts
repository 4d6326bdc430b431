// The CDK app: `npx cdk synth` / `npx cdk deploy`. Settings come from CDK context (see readAppSettings).
import { App } from "aws-cdk-lib";
import { buildEtcdBackupApp, readAppSettings } from "../infra/etcd-backup-app.js";

try {
  const app = new App();
  buildEtcdBackupApp(app, readAppSettings(app));
  app.synth();
} catch (error) {
  // A bad targets file or a validation finding: the message says what to fix; a stack trace would not.
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
}
