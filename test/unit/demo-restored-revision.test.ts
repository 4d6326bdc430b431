// The demo's revision check: the restore puts etcd at the snapshot's revision, or that plus the restore's
// bump where the restore tool has --bump-revision (etcdutl 3.6); anything else fails the check.
import { describe, expect, it } from "vitest";
import { restoredRevisionOf } from "../../cli/commands/demo-command.js";
import { revisionBump } from "../../lambdas/core/restore/validate-restore-step.js";

describe("the demo's restored revision", () => {
  it("holds at the snapshot's revision, restored without a bump (etcdctl 3.4)", () => {
    expect(restoredRevisionOf(412, 412)).toEqual({ asCatalogued: true, bumpedBy: 0 });
  });

  it("holds at the snapshot's revision plus the bump, and reports the bump", () => {
    expect(restoredRevisionOf(412 + revisionBump, 412)).toEqual({
      asCatalogued: true,
      bumpedBy: revisionBump,
    });
  });

  it("fails at any other revision, bumped or not", () => {
    expect(restoredRevisionOf(413, 412).asCatalogued).toBe(false);
    expect(restoredRevisionOf(411, 412).asCatalogued).toBe(false);
    expect(restoredRevisionOf(413 + revisionBump, 412).asCatalogued).toBe(false);
  });
});
