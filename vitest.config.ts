import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["test/support/private-tmpdir.ts"],
    // Integration tests start real etcd, s3rver and dynalite processes: give them room on 2 cores.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // The AWS SDK warns on every Node 20 process that its 2027 releases need Node 22: noise in test output.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
