#!/usr/bin/env node
// Runs the TypeScript CLI directly, so `npx etcd-backup` works right after `npm ci` with no build step.
import { register } from "tsx/esm/api";

// The AWS SDK warns on every Node 20 process that its future releases need Node 22: keep output clean.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
register();
await import("./etcd-backup.ts");
