import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCatalogueTable } from "../../lambdas/core/catalogue/catalogue-table.js";
import { ClusterLeases } from "../../lambdas/core/catalogue/cluster-lease.js";
import { InvalidInputError, LeaseHeldError } from "../../lambdas/core/errors.js";
import { type LocalDynamoDb, startLocalDynamoDb } from "../support/dynamodb-server.js";

const tableName = "etcd-backup-catalogue";
let dynamo: LocalDynamoDb;
let client: DynamoDBClient;
let leases: ClusterLeases;

beforeAll(async () => {
  dynamo = await startLocalDynamoDb();
  client = new DynamoDBClient({
    endpoint: dynamo.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
  });
  await createCatalogueTable(client, tableName);
  leases = new ClusterLeases({ client, tableName });
});

afterAll(async () => {
  client?.destroy();
  await dynamo?.stop();
});

let clusterCounter = 0;
function newCluster(): string {
  clusterCounter += 1;
  return `cluster-${clusterCounter}`;
}

const t0 = new Date("2026-11-24T19:36:00.000Z");
function at(secondsAfterT0: number): Date {
  return new Date(t0.getTime() + secondsAfterT0 * 1000);
}

const backupA = "arn:aws:states:eu-west-1:123456789012:execution:backup:a";
const backupB = "arn:aws:states:eu-west-1:123456789012:execution:backup:b";
const restore = "arn:aws:states:eu-west-1:123456789012:execution:restore:r";

async function leaseHeldError(promise: Promise<unknown>): Promise<LeaseHeldError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(LeaseHeldError);
  expect((error as Error).name).toBe("LeaseHeldError");
  return error as LeaseHeldError;
}

describe("cluster lease", () => {
  it("is granted on a cluster nobody holds, until now + ttl", async () => {
    const cluster = newCluster();
    const result = await leases.acquireLease({ cluster, owner: backupA, ttlSeconds: 900, now: t0 });
    expect(result).toEqual({
      acquired: true,
      duplicate: false,
      alreadyHeld: false,
      owner: backupA,
      heldUntil: "2026-11-24T19:51:00.000Z",
    });
    expect(await leases.getLease(cluster)).toEqual({
      cluster,
      owner: backupA,
      heldUntil: "2026-11-24T19:51:00.000Z",
      acquiredAt: "2026-11-24T19:36:00.000Z",
    });
  });

  it("refuses a second owner while held, naming the holder and its expiry", async () => {
    const cluster = newCluster();
    await leases.acquireLease({ cluster, owner: backupA, ttlSeconds: 900, now: t0 });
    const error = await leaseHeldError(
      leases.acquireLease({ cluster, owner: backupB, ttlSeconds: 900, now: at(60) }),
    );
    expect(error.message).toContain(backupA);
    expect(error.message).toContain("2026-11-24T19:51:00.000Z");
    expect((await leases.getLease(cluster))?.owner).toBe(backupA);
  });

  it("lapses by itself at its expiry, with no TTL and no release by the dead owner", async () => {
    const cluster = newCluster();
    await leases.acquireLease({ cluster, owner: backupA, ttlSeconds: 900, now: t0 });
    await leaseHeldError(leases.acquireLease({ cluster, owner: backupB, ttlSeconds: 900, now: at(899.999) }));
    const taken = await leases.acquireLease({ cluster, owner: backupB, ttlSeconds: 900, now: at(900) });
    expect(taken).toMatchObject({ acquired: true, alreadyHeld: false, owner: backupB });
    expect((await leases.getLease(cluster))?.owner).toBe(backupB);
  });

  it("is re-entrant for its owner, which can only extend it, never shorten it", async () => {
    const cluster = newCluster();
    await leases.acquireLease({ cluster, owner: restore, ttlSeconds: 3600, now: t0 });

    const safetySnapshot = await leases.acquireLease({
      cluster,
      owner: restore,
      ttlSeconds: 900,
      now: at(60),
    });
    expect(safetySnapshot).toEqual({
      acquired: true,
      duplicate: false,
      alreadyHeld: true,
      owner: restore,
      heldUntil: "2026-11-24T20:36:00.000Z",
    });
    expect((await leases.getLease(cluster))?.heldUntil).toBe("2026-11-24T20:36:00.000Z");

    const longer = await leases.acquireLease({ cluster, owner: restore, ttlSeconds: 3600, now: at(600) });
    expect(longer).toMatchObject({ alreadyHeld: true, heldUntil: "2026-11-24T20:46:00.000Z" });
    expect((await leases.getLease(cluster))?.heldUntil).toBe("2026-11-24T20:46:00.000Z");
  });

  it("is released only by its owner; a release by anyone else is a reported no-op", async () => {
    const cluster = newCluster();
    await leases.acquireLease({ cluster, owner: backupA, ttlSeconds: 900, now: t0 });

    expect(await leases.releaseLease({ cluster, owner: backupB })).toEqual({
      released: false,
      holder: backupA,
    });
    expect((await leases.getLease(cluster))?.owner).toBe(backupA);

    expect(await leases.releaseLease({ cluster, owner: backupA })).toEqual({ released: true });
    expect(await leases.releaseLease({ cluster, owner: backupA })).toEqual({ released: false });
    expect(await leases.getLease(cluster)).toEqual({ cluster });

    const next = await leases.acquireLease({ cluster, owner: backupB, ttlSeconds: 900, now: at(10) });
    expect(next).toMatchObject({ acquired: true, owner: backupB });
  });

  it("reports a release of a lease that never existed as a no-op", async () => {
    const cluster = newCluster();
    expect(await leases.releaseLease({ cluster, owner: backupA })).toEqual({ released: false });
    expect(await leases.getLease(cluster)).toBeUndefined();
  });

  it("is renewed by its owner, and refuses renewal to anyone else or once another owner took it", async () => {
    const cluster = newCluster();
    await leases.acquireLease({ cluster, owner: backupA, ttlSeconds: 900, now: t0 });
    expect(await leases.renewLease({ cluster, owner: backupA, ttlSeconds: 900, now: at(600) })).toEqual({
      heldUntil: "2026-11-24T20:01:00.000Z",
    });
    await leaseHeldError(leases.acquireLease({ cluster, owner: backupB, ttlSeconds: 900, now: at(1000) }));

    const notMine = await leaseHeldError(
      leases.renewLease({ cluster, owner: backupB, ttlSeconds: 900, now: at(1000) }),
    );
    expect(notMine.message).toContain(`held by ${backupA}`);

    await leases.acquireLease({ cluster, owner: backupB, ttlSeconds: 900, now: at(1500) });
    await leaseHeldError(leases.renewLease({ cluster, owner: backupA, ttlSeconds: 900, now: at(1501) }));

    await leases.releaseLease({ cluster, owner: backupB });
    const nobody = await leaseHeldError(
      leases.renewLease({ cluster, owner: backupB, ttlSeconds: 900, now: at(1502) }),
    );
    expect(nobody.message).toContain("nobody holds it");
  });

  it("keeps clusters apart", async () => {
    const first = newCluster();
    const second = newCluster();
    await leases.acquireLease({ cluster: first, owner: backupA, ttlSeconds: 900, now: t0 });
    const other = await leases.acquireLease({ cluster: second, owner: backupB, ttlSeconds: 900, now: t0 });
    expect(other).toMatchObject({ acquired: true, owner: backupB });
  });

  it("rejects a ttl that is not a positive whole number of seconds, and a scheduled time that is not a time", async () => {
    const cluster = newCluster();
    await expect(leases.acquireLease({ cluster, owner: backupA, ttlSeconds: 0, now: t0 })).rejects.toThrow(
      InvalidInputError,
    );
    await expect(
      leases.acquireLease({ cluster, owner: backupA, ttlSeconds: 60, now: t0, scheduledTime: "yesterday" }),
    ).rejects.toThrow(/scheduledTime is not a time/);
    expect(await leases.getLease(cluster)).toBeUndefined();
  });
});

describe("schedule tick deduplication", () => {
  const tick = "2026-11-24T19:36:00Z";

  it("makes a second start for the same tick a no-op, while the lease is held and after it is released", async () => {
    const cluster = newCluster();
    const first = await leases.acquireLease({
      cluster,
      owner: backupA,
      ttlSeconds: 900,
      now: t0,
      scheduledTime: tick,
    });
    expect(first).toMatchObject({ acquired: true, alreadyHeld: false });

    const duplicate = { acquired: false, duplicate: true, lastScheduledTime: "2026-11-24T19:36:00.000Z" };
    expect(
      await leases.acquireLease({
        cluster,
        owner: backupB,
        ttlSeconds: 900,
        now: at(1),
        scheduledTime: tick,
      }),
    ).toEqual(duplicate);
    expect((await leases.getLease(cluster))?.owner).toBe(backupA);

    await leases.releaseLease({ cluster, owner: backupA });
    expect((await leases.getLease(cluster))?.lastScheduledTime).toBe("2026-11-24T19:36:00.000Z");
    expect(
      await leases.acquireLease({
        cluster,
        owner: backupB,
        ttlSeconds: 900,
        now: at(120),
        scheduledTime: "2026-11-24T19:36:00.000Z",
      }),
    ).toEqual(duplicate);
    expect((await leases.getLease(cluster))?.owner).toBeUndefined();
  });

  it("treats a tick older than the last one as a duplicate and a newer one as a new run", async () => {
    const cluster = newCluster();
    await leases.acquireLease({ cluster, owner: backupA, ttlSeconds: 900, now: t0, scheduledTime: tick });
    await leases.releaseLease({ cluster, owner: backupA });

    const stale = await leases.acquireLease({
      cluster,
      owner: backupB,
      ttlSeconds: 900,
      now: at(3600),
      scheduledTime: "2026-11-24T18:36:00Z",
    });
    expect(stale).toMatchObject({ acquired: false, duplicate: true });

    const nextHour = await leases.acquireLease({
      cluster,
      owner: backupB,
      ttlSeconds: 900,
      now: at(3600),
      scheduledTime: "2026-11-24T20:36:00Z",
    });
    expect(nextHour).toMatchObject({ acquired: true, owner: backupB });
    expect((await leases.getLease(cluster))?.lastScheduledTime).toBe("2026-11-24T20:36:00.000Z");
  });

  it("lets the owner retry its own acquisition for the same tick", async () => {
    const cluster = newCluster();
    await leases.acquireLease({ cluster, owner: backupA, ttlSeconds: 900, now: t0, scheduledTime: tick });
    const retry = await leases.acquireLease({
      cluster,
      owner: backupA,
      ttlSeconds: 900,
      now: at(5),
      scheduledTime: tick,
    });
    expect(retry).toMatchObject({ acquired: true, alreadyHeld: true, owner: backupA });
  });

  it("refuses a new tick while an earlier run still holds the lease", async () => {
    const cluster = newCluster();
    await leases.acquireLease({ cluster, owner: backupA, ttlSeconds: 900, now: t0, scheduledTime: tick });
    const error = await leaseHeldError(
      leases.acquireLease({
        cluster,
        owner: backupB,
        ttlSeconds: 900,
        now: at(300),
        scheduledTime: "2026-11-24T19:41:00Z",
      }),
    );
    expect(error.message).toContain(backupA);
  });

  it("lets a new tick take the expired lease of a run that died without releasing it", async () => {
    const cluster = newCluster();
    await leases.acquireLease({ cluster, owner: backupA, ttlSeconds: 900, now: t0, scheduledTime: tick });
    const result = await leases.acquireLease({
      cluster,
      owner: backupB,
      ttlSeconds: 900,
      now: at(3600),
      scheduledTime: "2026-11-24T20:36:00Z",
    });
    expect(result).toMatchObject({ acquired: true, alreadyHeld: false, owner: backupB });
  });
});

describe("concurrent acquisition", () => {
  it("grants the lease to exactly one of several simultaneous acquirers", async () => {
    const cluster = newCluster();
    const owners = Array.from({ length: 6 }, (_, index) => `arn:execution:racer-${index}`);
    const results = await Promise.allSettled(
      owners.map((owner) => leases.acquireLease({ cluster, owner, ttlSeconds: 900, now: t0 })),
    );
    const winners = results.filter((result) => result.status === "fulfilled");
    const losers = results.filter((result) => result.status === "rejected");
    expect(winners).toHaveLength(1);
    expect(losers).toHaveLength(owners.length - 1);
    const holder = (await leases.getLease(cluster))?.owner;
    expect(winners[0]?.value).toMatchObject({ acquired: true, alreadyHeld: false, owner: holder });
    for (const loser of losers) {
      expect(loser.reason).toBeInstanceOf(LeaseHeldError);
      expect((loser.reason as Error).message).toContain(`held by ${holder}`);
    }
  });

  it("runs exactly one of several simultaneous starts for the same tick; the others are duplicates", async () => {
    const cluster = newCluster();
    const results = await Promise.all(
      Array.from({ length: 4 }, (_, index) =>
        leases.acquireLease({
          cluster,
          owner: `arn:execution:tick-${index}`,
          ttlSeconds: 900,
          now: t0,
          scheduledTime: "2026-11-24T19:36:00Z",
        }),
      ),
    );
    expect(results.filter((result) => result.acquired)).toHaveLength(1);
    expect(results.filter((result) => result.duplicate)).toHaveLength(3);
  });
});
