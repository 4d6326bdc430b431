// The barrier check after etcd restarts from a restore, against a real etcd: the revision it must be at
// depends on whether the restore bumped it, and an optional bump may have been skipped.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import type { TargetsFile } from "../../lambdas/core/config/target-config.js";
import { SnapshotCorruptError } from "../../lambdas/core/errors.js";
import { createEtcdClient } from "../../lambdas/core/etcd/etcd-client.js";
import { checkEtcdHealth } from "../../lambdas/core/restore/check-etcd-health-step.js";
import type { RestoreDependencies } from "../../lambdas/core/restore/restore-dependencies.js";
import type { RestoreMember, RestoreSnapshot } from "../../lambdas/core/restore/restore-payloads.js";
import { type EtcdCluster, startEtcdCluster } from "../support/etcd-cluster.js";
import { createEtcdWriter } from "../support/etcd-writer.js";

let etcd: EtcdCluster;
let live: { revision: number; count: number };
/** The member's own HashKV at its revision, as a snapshot of it would catalogue it. */
let liveHash: { hash: number; compactRevision: number };
let members: RestoreMember[];

beforeAll(async () => {
  etcd = await startEtcdCluster({ members: 1 });
  const writer = createEtcdWriter({ endpoints: etcd.endpoints });
  for (let index = 0; index < 5; index++) await writer.put(`/registry/pods/default/p-${index}`, "v");
  const client = createEtcdClient({ endpoint: etcd.endpoints[0] as string });
  try {
    live = await client.countKeys();
    const { hash, compactRevision } = await client.hashKV(live.revision);
    liveHash = { hash, compactRevision };
  } finally {
    client.close();
  }
  members = restoreMembersOf(etcd);
}, 60_000);

afterAll(async () => {
  await etcd?.stop();
});

/** The cluster's members as a restore lists them. */
function restoreMembersOf(cluster: EtcdCluster): RestoreMember[] {
  return cluster.members.map((member) => ({
    name: member.name,
    dataDir: member.dataDir,
    manifestDir: "/etc/kubernetes/manifests",
    clientUrl: member.clientUrl,
    peerUrl: member.peerUrl,
  }));
}

const dependencies = {
  loadTargets: async () =>
    ({
      prefix: "etcd-backup",
      targets: [
        {
          name: "c",
          access: { kind: "direct" },
          etcd: { endpoints: etcd.endpoints, memberHashCheck: "enforce" },
        },
        {
          name: "r",
          access: { kind: "direct" },
          etcd: { endpoints: etcd.endpoints, memberHashCheck: "report" },
        },
      ],
    }) as unknown as TargetsFile,
  loadEtcdTls: async () => undefined,
  reporter: silentReporter,
  now: () => new Date(),
} as unknown as RestoreDependencies;

function snapshotAt(fields: Partial<RestoreSnapshot>): RestoreSnapshot {
  return {
    sourceCluster: "c",
    snapshotId: "20261125T000000000Z-000000",
    bucket: "b",
    key: "k",
    sha256: "0".repeat(64),
    bytes: 1,
    revision: live.revision,
    liveKeyCount: live.count,
    ...fields,
  };
}

const check = (snapshot: RestoreSnapshot) =>
  checkEtcdHealth(dependencies, { cluster: "c", snapshotId: snapshot.snapshotId }, snapshot, members);

describe("checkEtcdHealth", () => {
  it("passes at the snapshot's revision plus the bump, and says the revision was bumped", async () => {
    const result = await check(snapshotAt({ revision: live.revision - 3, bumpRevision: 3 }));
    expect(result.summary).toBe(
      `1 member(s) healthy, one leader, revision ${live.revision} (the snapshot's ${live.revision - 3}, bumped by 3), ${live.count} keys`,
    );
  });

  it("fails at the snapshot's own revision when the bump was required", async () => {
    await expect(check(snapshotAt({ bumpRevision: 3 }))).rejects.toThrow(
      `is at revision ${live.revision}, expected ${live.revision + 3}`,
    );
  });

  it("passes at the snapshot's own revision when the bump was optional, saying it was not bumped", async () => {
    const result = await check(snapshotAt({ bumpRevision: 3, revisionBumpOptional: true }));
    expect(result.summary).toContain(
      `revision ${live.revision} (NOT bumped: the restore tool has no --bump-revision; restart every Kubernetes client)`,
    );
  });

  it("fails where the keys at the restored revision are not the snapshot's count, and below that revision", async () => {
    // One revision earlier held one key less than the snapshot says.
    await expect(
      check(snapshotAt({ revision: live.revision - 1, bumpRevision: 3, revisionBumpOptional: true })),
    ).rejects.toThrow(
      `${etcd.endpoints[0]} held ${live.count - 1} keys at revision ${live.revision - 1}, the snapshot ${live.count}`,
    );
    await expect(check(snapshotAt({ liveKeyCount: live.count + 1 }))).rejects.toThrow(
      `${etcd.endpoints[0]} held ${live.count} keys at revision ${live.revision}, the snapshot ${live.count + 1}`,
    );
    await expect(check(snapshotAt({ revision: live.revision + 1 }))).rejects.toThrow(
      `${etcd.endpoints[0]} is at revision ${live.revision}, expected ${live.revision + 1} or later`,
    );
  });

  it("compares each member's HashKV with the snapshot's when the revision was not bumped", async () => {
    const result = await check(snapshotAt({ kvHash: liveHash }));
    expect(result.summary).toBe(
      `1 member(s) healthy, one leader, revision ${live.revision}, ${live.count} keys, content as the snapshot's (HashKV)`,
    );
    // Same revision and key count, other values: only the content check sees it.
    // Not retried (SnapshotCorruptError, not EtcdUnavailableError): the restore rolls back at once.
    await expect(check(snapshotAt({ kvHash: { ...liveHash, hash: liveHash.hash ^ 1 } }))).rejects.toThrow(
      new SnapshotCorruptError(
        `etcd is not as restored: member ${members[0]?.name}'s HashKV at revision ${live.revision} is ${liveHash.hash}, the snapshot's ${liveHash.hash ^ 1}: its content is not the snapshot's`,
      ),
    );
    // A target that only reports mismatches keeps the restore, and its notice says what differed.
    const reported = await checkEtcdHealth(
      dependencies,
      { cluster: "r", snapshotId: "20261125T000000000Z-000000" },
      snapshotAt({ kvHash: { ...liveHash, hash: liveHash.hash ^ 1 } }),
      members,
    );
    expect(reported.summary).toContain(
      `; content NOT as the snapshot's, reported as memberHashCheck asks: member ${members[0]?.name}'s HashKV at revision ${live.revision} is ${liveHash.hash}`,
    );
    // Bumped: nothing to compare, and the summary does not claim it.
    const bumped = await check(
      snapshotAt({ revision: live.revision - 3, bumpRevision: 3, kvHash: liveHash }),
    );
    expect(bumped.summary).not.toContain("HashKV");
  });
});

describe("checkEtcdHealth after etcd expired a lease of the snapshot", () => {
  // kube-apiserver's /registry/masterleases/ keys live on 15 s leases, Events on hour-long ones: once the
  // restored cluster's leader takes over, etcd revokes the expired ones, deleting their keys at new
  // revisions, before any API server is back.
  let leased: EtcdCluster;
  afterAll(async () => {
    await leased?.stop();
  });

  it("passes: the count and content at the restored revision are the snapshot's, and the summary says what moved", async () => {
    leased = await startEtcdCluster({ members: 1 });
    const writer = createEtcdWriter({ endpoints: leased.endpoints });
    for (let index = 0; index < 3; index++) await writer.put(`/registry/pods/default/p-${index}`, "v");
    const lease = await writer.grantLease(1);
    await writer.put("/registry/masterleases/10.0.0.1", "endpoint", { lease });
    const client = createEtcdClient({ endpoint: leased.endpoints[0] as string });
    try {
      const atSnapshot = await client.countKeys();
      const { hash, compactRevision } = await client.hashKV(atSnapshot.revision);
      // etcd revokes the lease by itself once its TTL has run out.
      await expect
        .poll(async () => (await client.countKeys()).revision, { timeout: 15_000, interval: 200 })
        .toBeGreaterThan(atSnapshot.revision);
      expect((await client.countKeys()).count).toBe(atSnapshot.count - 1);

      const snapshot = snapshotAt({
        revision: atSnapshot.revision,
        liveKeyCount: atSnapshot.count,
        kvHash: { hash, compactRevision },
      });

      const result = await checkEtcdHealth(
        { ...dependencies, loadTargets: async () => leasedTargets(leased.endpoints) },
        { cluster: "c", snapshotId: snapshot.snapshotId },
        snapshot,
        restoreMembersOf(leased),
      );
      expect(result.summary).toBe(
        `1 member(s) healthy, one leader, revision ${atSnapshot.revision}, ${atSnapshot.count} keys, content as the snapshot's (HashKV); now at revision ${atSnapshot.revision + 1}: ${1} revision(s) written since, as etcd expires the snapshot's leases`,
      );
    } finally {
      client.close();
    }
  }, 60_000);
});

function leasedTargets(endpoints: string[]): TargetsFile {
  return {
    prefix: "etcd-backup",
    targets: [{ name: "c", access: { kind: "direct" }, etcd: { endpoints, memberHashCheck: "enforce" } }],
  } as unknown as TargetsFile;
}
