// s3rver in a process of its own (bench/helper-process.ts): prints `{ "endpoint", "bucket" }` once it
// listens, and removes its data when it stops.
import { startLocalS3 } from "../test/support/s3-server.js";
import { serveUntilParentGoes } from "./helper-process.js";

const s3 = await startLocalS3(process.argv[2] ?? "etcd-backup-bench");
serveUntilParentGoes({ endpoint: s3.endpoint, bucket: s3.bucket }, () => s3.stop());
