// The CDK app: `npx cdk synth` / `npx cdk deploy`. Settings come from CDK context (see readAppSettings).
import { App } from "aws-cdk-lib";
import { buildEtcdBackupApp, readAppSettings } from "../infra/etcd-backup-app.js";

const app = new App();
buildEtcdBackupApp(app, readAppSettings(app));
app.synth();
