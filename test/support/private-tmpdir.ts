// Every test file gets a temporary directory of its own as TMPDIR, removed after the file's own cleanup:
// CDK synthesis (an App without an outdir makes one per synth), the infra tests' npm caches and bundles,
// and the processes the tests start would otherwise leave gigabytes in /tmp over repeated runs.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

const outer = tmpdir();
const own = mkdtempSync(join(outer, "etcd-backup-test-"));
process.env.TMPDIR = own;

// Registered before the file's hooks, so it runs after them (vitest runs after-hooks in reverse).
afterAll(() => {
  process.env.TMPDIR = outer;
  rmSync(own, { recursive: true, force: true });
});
