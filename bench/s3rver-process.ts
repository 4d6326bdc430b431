// s3rver in a process of its own, so that its CPU and memory are not counted as the product's.
// Prints one JSON line `{ "endpoint", "bucket" }` once it listens; stops (removing its data) on SIGTERM,
// SIGINT or when its stdin closes, so that it never outlives the bench.
import { startLocalS3 } from "../test/support/s3-server.js";

const s3 = await startLocalS3(process.argv[2] ?? "etcd-backup-bench");
process.stdout.write(`${JSON.stringify({ endpoint: s3.endpoint, bucket: s3.bucket })}\n`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await s3.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.resume();
