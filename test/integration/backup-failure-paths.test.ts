// The backup state machine's failure and retry paths, executed locally with aws-local-stepfunctions and
// the real handlers against a real etcd, s3rver, dynalite and the stand-in Kubernetes API: which states
// ran, and what the catalogue and the bucket (objects and open multipart uploads) hold afterwards.
// Where a path needs something to happen between two attempts or two states (an answer lost after the
// upload, an attempt that died with its upload open, an object damaged after it was stored), a wrapper
// around the real handler does it; the wrapped handler itself is unchanged.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  CreateMultipartUploadCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { DynamoDBDocumentClient, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { backupFunctions } from "../../cli/local/backup-functions.js";
import type { LocalHandler } from "../../cli/local/local-state-machine.js";
import { snapshotSortKey } from "../../lambdas/core/catalogue/catalogue-table.js";
import { ErrorNames } from "../../lambdas/core/errors.js";
import { snapshotObjectKey } from "../../lambdas/core/snapshot/snapshot-naming.js";
import { createDynamoDbClient } from "../../lambdas/core/store/aws-clients.js";
import { resealTrailer } from "../support/bbolt-builder.js";
import { runCliInProcess } from "../support/cli-in-process.js";
import { createEtcdWriter, type EtcdWriter } from "../support/etcd-writer.js";
import { type KubeApiStandIn, startKubeApiStandIn } from "../support/kube-api-server/index.js";
import { type LocalBackupStack, startLocalBackupStack } from "../support/local-backup-stack.js";
import { runBackupMachine } from "../support/run-backup-machine.js";

const kubeconfigSecretArn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:etcd-backup-kubeconfig";
const missingPodsSelector = "app.kubernetes.io/name=etcd";
const secrets = mockClient(SecretsManagerClient);

let stack: LocalBackupStack;
let writer: EtcdWriter;
let standIn: KubeApiStandIn;

beforeAll(async () => {
  [stack, standIn] = await Promise.all([
    startLocalBackupStack({
      extraTargets: [
        {
          // Reached through the stand-in API server, where no pod carries this selector's label.
          name: "kube-missing",
          schedule: "rate(1 hour)",
          access: { kind: "kubeconfig", secretArn: kubeconfigSecretArn },
          etcd: { source: "exec", selector: missingPodsSelector },
        },
      ],
    }),
    startKubeApiStandIn({
      pods: [
        // kubeadm's label, not the one the target selects.
        {
          name: "etcd-cp-0",
          namespace: "kube-system",
          labels: { component: "etcd", tier: "control-plane" },
          containers: [{ name: "etcd" }],
        },
      ],
      auth: { bearerTokens: [{ token: "backup-token", user: "etcd-backup", groups: ["etcd-backup"] }] },
    }),
  ]);
  secrets
    .on(GetSecretValueCommand, { SecretId: kubeconfigSecretArn })
    .resolves({ SecretString: await readFile(standIn.kubeconfigPath, "utf8") });
  writer = createEtcdWriter(stack.etcd);
  await writer.putMany(
    Array.from({ length: 150 }, (_, index) => [`/registry/configmaps/default/cm-${index}`, `data-${index}`]),
  );
});

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(async () => {
  secrets.restore();
  await standIn?.stop();
  await stack?.stop();
});

type Functions = typeof backupFunctions;

/** The backup functions with one handler wrapped: `wrap` gets the real handler and decides when to call it. */
function wrapping(name: keyof Functions & string, wrap: (real: LocalHandler) => LocalHandler): Functions {
  const load = backupFunctions[name];
  if (!load) throw new Error(`no backup function ${name}`);
  return { ...backupFunctions, [name]: async () => wrap(await load()) };
}

/** The payload the state machine gives TakeSnapshot: the execution input and ResolveTarget's result. */
function snapshotTaskPayload(event: unknown) {
  return event as { executionArn: string; input: { cluster: string }; target: { snapshotId: string } };
}

/**
 * The backup functions with VerifySnapshot seeing a stored snapshot whose one value was changed and whose
 * trailer was resealed, as if the source had streamed it so (the snapshot step's payload and catalogue row
 * say its sha256): a sound file that only the members' HashKV can tell apart.
 */
function alteringTheStoredSnapshot() {
  let storedKey: string | undefined;
  const functions = wrapping("VerifySnapshotFunctionArn", (real) => async (event, context) => {
    const payload = event as {
      input: { cluster: string };
      snapshot: { key: string; sha256: string; snapshotId: string };
    };
    storedKey = payload.snapshot.key;
    const object = await stack.s3.client.send(
      new GetObjectCommand({ Bucket: stack.s3.bucket, Key: storedKey }),
    );
    const bytes = Buffer.from(
      await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
    const at = bytes.indexOf("data-42") + "data-4".length;
    bytes[at] = "7".charCodeAt(0);
    const resealed = resealTrailer(bytes);
    await stack.s3.client.send(
      new PutObjectCommand({ Bucket: stack.s3.bucket, Key: storedKey, Body: resealed }),
    );
    const sha256 = resealed.subarray(resealed.length - 32).toString("hex");
    await DynamoDBDocumentClient.from(createDynamoDbClient({ endpoint: stack.dynamo.endpoint })).send(
      new UpdateCommand({
        TableName: stack.tableName,
        Key: { cluster: payload.input.cluster, sk: snapshotSortKey(payload.snapshot.snapshotId) },
        UpdateExpression: "SET sha256 = :sha256",
        ExpressionAttributeValues: { ":sha256": sha256 },
      }),
    );
    return real({ ...payload, snapshot: { ...payload.snapshot, sha256, versionId: undefined } }, context);
  });
  return { functions, key: () => storedKey as string };
}

/** What the catalogue holds for one execution, over every status. */
async function rowsOf(cluster: string, executionArn: string) {
  const { snapshots } = await stack.catalogue.listSnapshots(cluster, { limit: 100 });
  return snapshots.filter((snapshot) => snapshot.executionArn === executionArn);
}

async function etagOf(key: string): Promise<string | undefined> {
  return (await stack.s3.client.send(new HeadObjectCommand({ Bucket: stack.s3.bucket, Key: key }))).ETag;
}

/** Names of the S3 commands any client in this process sends (the handlers' own included), by phase. */
function recordS3Commands() {
  const sent = new Map<string, string[]>();
  const recorder = { phase: undefined as string | undefined, sent };
  const send = S3Client.prototype.send;
  vi.spyOn(S3Client.prototype, "send").mockImplementation(function (this: S3Client, ...args: unknown[]) {
    if (recorder.phase !== undefined) {
      const names = sent.get(recorder.phase) ?? [];
      names.push((args[0] as object).constructor.name);
      sent.set(recorder.phase, names);
    }
    return (send as (...values: unknown[]) => unknown).apply(this, args) as never;
  });
  return recorder;
}

const uploadCommands = [
  "PutObjectCommand",
  "CreateMultipartUploadCommand",
  "UploadPartCommand",
  "CompleteMultipartUploadCommand",
];

describe("the backup state machine's failure and retry paths, executed locally", () => {
  it("refuses a run while another execution holds the lease: retries LeaseHeldError, then tells on-call, touching neither the lease nor the bucket", async () => {
    const holder = "arn:aws:states:local:000000000000:execution:backup:the-other-run";
    await stack.leases.acquireLease({ cluster: "local", owner: holder, ttlSeconds: 3600, now: new Date() });
    const before = await stack.leases.getLease("local");
    const rowsBefore = (await stack.catalogue.listSnapshots("local", { limit: 100 })).snapshots.length;
    const keysBefore = await stack.s3.listKeys(`${stack.prefix}/local/`);
    try {
      const run = await runBackupMachine({ cluster: "local", scheduledTime: "2026-11-24T09:00:00Z" });
      expect(run.status).toBe("FAILED");
      expect(run.error?.name).toBe("BackupFailed");
      // The definition's MaxAttempts for LeaseHeldError.
      expect(run.retried("AcquireLease")).toBe(5);
      expect(run.entered.filter((state) => state !== "AcquireLease")).toEqual([
        "MarkFailed",
        "NotifyOnCall",
        "BackupFailed",
      ]);
      expect(run.published).toHaveLength(1);
      expect(run.published[0]?.subject).toBe("etcd-backup: backup of local failed at AcquireLease");
      expect(run.published[0]?.message).toContain(`Error:     ${ErrorNames.LeaseHeld}`);
      expect(run.published[0]?.message).toContain(`held by ${holder}`);
      // Nothing released: the lease was never this run's.
      expect(run.published[0]?.message).toContain("Clean-up:  nothing to clean up");
      expect(await stack.leases.getLease("local")).toEqual(before);
      expect(before).toMatchObject({ owner: holder });
      expect(await rowsOf("local", run.executionArn)).toEqual([]);
      expect((await stack.catalogue.listSnapshots("local", { limit: 100 })).snapshots).toHaveLength(
        rowsBefore,
      );
      expect(await stack.s3.listKeys(`${stack.prefix}/local/`)).toEqual(keysBefore);
      expect(await stack.s3.listOpenMultipartUploads()).toEqual([]);
    } finally {
      await stack.leases.releaseLease({ cluster: "local", owner: holder });
    }
  });

  it("returns the recorded result when TakeSnapshot's answer was lost after the upload, without uploading again", async () => {
    const recorder = recordS3Commands();
    const attempts: Array<{ key: string; etag?: string; sha256: string }> = [];
    const functions = wrapping("TakeSnapshotFunctionArn", (real) => async (event, context) => {
      recorder.phase = attempts.length === 0 ? "first attempt" : "retry";
      try {
        if (attempts.length > 0) return await real(event, context);
        const result = (await real(event, context)) as { key: string; sha256: string };
        attempts.push({ key: result.key, etag: await etagOf(result.key), sha256: result.sha256 });
      } finally {
        recorder.phase = undefined;
      }
      // A new revision: a second snapshot would differ from the first in bytes and sha256.
      await writer.put("/registry/configmaps/default/after-the-first-attempt", "changed");
      throw Object.assign(new Error("the function's answer was lost"), { name: "Lambda.ServiceException" });
    });
    const run = await runBackupMachine(
      { cluster: "local", scheduledTime: "2026-11-24T10:00:00Z" },
      functions,
    );
    expect(run.error).toBeUndefined();
    expect(run.status).toBe("SUCCEEDED");
    expect(run.retried("TakeSnapshot")).toBe(1);
    expect(run.entered.filter((state) => state !== "TakeSnapshot")).toEqual([
      "AcquireLease",
      "IsDuplicateTick",
      "ResolveTarget",
      "VerifySnapshot",
      "PruneSnapshots",
      "ReleaseLease",
      "Done",
    ]);
    // The first attempt's upload went through the recorded clients; the retry wrote nothing to S3.
    expect(recorder.sent.get("first attempt")).toEqual(
      expect.arrayContaining(["CompleteMultipartUploadCommand"]),
    );
    expect((recorder.sent.get("retry") ?? []).filter((command) => uploadCommands.includes(command))).toEqual(
      [],
    );
    const [first] = attempts;
    const rows = await rowsOf("local", run.executionArn);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: "VERIFIED", key: first?.key, sha256: first?.sha256 });
    const key = first?.key as string;
    expect(await stack.s3.listKeys(key)).toEqual([key]);
    expect(await etagOf(key)).toBe(first?.etag);
    expect(await stack.s3.listOpenMultipartUploads()).toEqual([]);
    expect((await stack.leases.getLease("local"))?.owner).toBeUndefined();
  });

  it("aborts the upload an attempt left open under the snapshot's key, and ends with one object and no open upload", async () => {
    const deadPartBytes = 4096;
    let attempts = 0;
    let leftOpen: { key: string; uploadId: string } | undefined;
    const functions = wrapping("TakeSnapshotFunctionArn", (real) => async (event, context) => {
      attempts++;
      if (attempts > 1) return real(event, context);
      // What an attempt that died mid-stream leaves: its row IN_PROGRESS and its upload open, one part in.
      const { executionArn, input, target } = snapshotTaskPayload(event);
      const key = snapshotObjectKey(stack.prefix, input.cluster, target.snapshotId);
      await stack.catalogue.recordStarted({
        cluster: input.cluster,
        snapshotId: target.snapshotId,
        bucket: stack.s3.bucket,
        key,
        sourceMember: stack.etcd.endpoints[0] as string,
        startedAt: new Date(),
        executionArn,
      });
      const { UploadId } = await stack.s3.client.send(
        new CreateMultipartUploadCommand({ Bucket: stack.s3.bucket, Key: key }),
      );
      await stack.s3.client.send(
        new UploadPartCommand({
          Bucket: stack.s3.bucket,
          Key: key,
          UploadId,
          PartNumber: 1,
          Body: Buffer.alloc(deadPartBytes, 7),
        }),
      );
      leftOpen = { key, uploadId: UploadId as string };
      expect(await stack.s3.listOpenMultipartUploads()).toEqual([key]);
      throw Object.assign(new Error("the attempt's sandbox was lost mid-stream"), {
        name: "Lambda.ServiceException",
      });
    });
    const run = await runBackupMachine(
      { cluster: "local", scheduledTime: "2026-11-24T11:00:00Z" },
      functions,
    );
    expect(run.error).toBeUndefined();
    expect(run.status).toBe("SUCCEEDED");
    expect(attempts).toBe(2);
    expect(run.retried("TakeSnapshot")).toBe(1);
    const key = leftOpen?.key as string;
    expect(await stack.s3.listOpenMultipartUploads()).toEqual([]);
    expect(await stack.s3.listKeys(key)).toEqual([key]);
    const rows = await rowsOf("local", run.executionArn);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: "VERIFIED", key });
    expect(rows[0]?.liveKeyCount).toBeGreaterThanOrEqual(150);
    // VERIFIED: the stored object is the retry's whole snapshot, not the dead attempt's part.
    expect(rows[0]?.bytes).not.toBe(deadPartBytes);
    const stored = await stack.s3.client.send(new HeadObjectCommand({ Bucket: stack.s3.bucket, Key: key }));
    expect(stored.ContentLength).toBe(rows[0]?.bytes);
  });

  it("fails VerifySnapshot with SnapshotCorruptError, without a retry, when the stored object was damaged", async () => {
    const verifySnapshot = JSON.parse(
      await readFile(join(import.meta.dirname, "../../statemachine/backup.asl.json"), "utf8"),
    ).States.VerifySnapshot as { Retry: Array<{ ErrorEquals: string[] }> };
    const retriedErrors = verifySnapshot.Retry.flatMap((retry) => retry.ErrorEquals);
    expect(retriedErrors).not.toContain(ErrorNames.SnapshotCorrupt);
    expect(retriedErrors).not.toContain("States.ALL");

    let verifications = 0;
    let damagedKey: string | undefined;
    const functions = wrapping("VerifySnapshotFunctionArn", (real) => async (event, context) => {
      verifications++;
      const { key } = (event as { snapshot: { key: string } }).snapshot;
      if (damagedKey === undefined) {
        damagedKey = key;
        const object = await stack.s3.client.send(
          new GetObjectCommand({ Bucket: stack.s3.bucket, Key: key }),
        );
        const bytes = Buffer.from(
          await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
        );
        // Flip a run of bytes in the middle of the database: same key, same length, other content.
        const middle = Math.floor(bytes.length / 2);
        for (let index = middle; index < middle + 64; index++) bytes[index] = (bytes[index] as number) ^ 0xff;
        await stack.s3.client.send(new PutObjectCommand({ Bucket: stack.s3.bucket, Key: key, Body: bytes }));
      }
      return real(event, context);
    });
    const run = await runBackupMachine(
      { cluster: "local", scheduledTime: "2026-11-24T12:00:00Z" },
      functions,
    );
    expect(run.status).toBe("FAILED");
    expect(run.error?.name).toBe("BackupFailed");
    expect(verifications).toBe(1);
    expect(run.retried("VerifySnapshot")).toBe(0);
    expect(run.entered).toEqual([
      "AcquireLease",
      "IsDuplicateTick",
      "ResolveTarget",
      "TakeSnapshot",
      "VerifySnapshot",
      "MarkFailed",
      "NotifyOnCall",
      "BackupFailed",
    ]);
    expect(run.published).toHaveLength(1);
    expect(run.published[0]?.subject).toBe("etcd-backup: backup of local failed at VerifySnapshot");
    expect(run.published[0]?.message).toContain(`Error:     ${ErrorNames.SnapshotCorrupt}`);
    expect(run.published[0]?.message).toContain("lease released");
    const rows = await rowsOf("local", run.executionArn);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      status: "FAILED",
      key: damagedKey,
      failure: { errorName: ErrorNames.SnapshotCorrupt },
    });
    // The damaged object stays for retention to remove, marked so that nothing restores from it.
    const key = damagedKey as string;
    expect(await stack.s3.listKeys(key)).toEqual([key]);
    const { TagSet } = await stack.s3.client.send(
      new GetObjectTaggingCommand({ Bucket: stack.s3.bucket, Key: key }),
    );
    expect(TagSet).toContainEqual({ Key: "etcd-backup-status", Value: "corrupt" });
    expect(await stack.s3.listOpenMultipartUploads()).toEqual([]);
    expect((await stack.leases.getLease("local"))?.owner).toBeUndefined();
  });

  it("fails VerifySnapshot as corrupt when a sound snapshot does not hold what its member holds (HashKV)", async () => {
    const altered = alteringTheStoredSnapshot();
    const run = await runBackupMachine(
      { cluster: "local", scheduledTime: "2026-11-24T12:30:00Z" },
      altered.functions,
    );
    expect(run.status).toBe("FAILED");
    expect(run.retried("VerifySnapshot")).toBe(0);
    expect(run.entered.slice(-3)).toEqual(["MarkFailed", "NotifyOnCall", "BackupFailed"]);
    expect(run.published[0]?.message).toMatch(
      /the snapshot does not hold what \S+ holds at revision \d+: HashKV \d+/,
    );
    const rows = await rowsOf("local", run.executionArn);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: "FAILED", failure: { errorName: ErrorNames.SnapshotCorrupt } });
    const { TagSet } = await stack.s3.client.send(
      new GetObjectTaggingCommand({ Bucket: stack.s3.bucket, Key: altered.key() }),
    );
    expect(TagSet).toContainEqual({ Key: "etcd-backup-status", Value: "corrupt" });
  });

  it("keeps the same snapshot VERIFIED and records the mismatch where the target says memberHashCheck report", async () => {
    const altered = alteringTheStoredSnapshot();
    const run = await runBackupMachine(
      { cluster: "local-report", scheduledTime: "2026-11-24T12:45:00Z" },
      altered.functions,
    );
    expect(run.status, JSON.stringify(run.published)).toBe("SUCCEEDED");
    expect(run.published).toEqual([]);
    const rows = await rowsOf("local-report", run.executionArn);
    expect(rows).toEqual([
      expect.objectContaining({
        status: "VERIFIED",
        memberHash: expect.objectContaining({
          outcome: "mismatched",
          agreeing: [],
          diverged: [stack.etcd.endpoints[0]],
          reason: expect.stringMatching(
            /^the snapshot does not hold what \S+ holds at revision \d+: HashKV \d+/,
          ),
        }),
      }),
    ]);
    // `list` points at it, where a person scans the catalogue.
    const list = await runCliInProcess([
      "list",
      "--cluster",
      "local-report",
      "--table",
      stack.tableName,
      "--dynamodb-endpoint",
      stack.dynamo.endpoint,
    ]);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(`${rows[0]?.snapshotId}  VERIFIED`);
    expect(list.stdout).toContain(`HASHKV MISMATCHED: ${stack.etcd.endpoints[0]} differ`);
  });

  it("verifies and says why, when the member cannot be asked for its HashKV", async () => {
    const functions = wrapping("VerifySnapshotFunctionArn", (real) => async (event, context) => {
      const payload = event as { target: { member: { endpoint: string } } };
      // The member went away between the snapshot and its verification.
      const gone = {
        ...payload.target,
        member: { ...payload.target.member, endpoint: "http://127.0.0.1:9" },
      };
      return real({ ...payload, target: gone }, context);
    });
    const run = await runBackupMachine(
      { cluster: "local", scheduledTime: "2026-11-24T13:30:00Z" },
      functions,
    );
    expect(run.status).toBe("SUCCEEDED");
    const rows = await rowsOf("local", run.executionArn);
    expect(rows).toEqual([
      expect.objectContaining({
        status: "VERIFIED",
        memberHash: {
          outcome: "not-compared",
          revision: rows[0]?.revision,
          reason: expect.stringMatching(/^http:\/\/127\.0\.0\.1:9: did not answer HashKV: /),
        },
      }),
    ]);
  });

  it("fails at ResolveTarget, naming the selector, when no etcd pod matches it, and leaves nothing behind", async () => {
    const run = await runBackupMachine({ cluster: "kube-missing", scheduledTime: "2026-11-24T13:00:00Z" });
    expect(run.status).toBe("FAILED");
    expect(run.entered).toEqual([
      "AcquireLease",
      "IsDuplicateTick",
      "ResolveTarget",
      "MarkFailed",
      "NotifyOnCall",
      "BackupFailed",
    ]);
    expect(run.retried("ResolveTarget")).toBe(0);
    expect(run.published).toHaveLength(1);
    const [message] = run.published;
    expect(message?.subject).toBe("etcd-backup: backup of kube-missing failed at ResolveTarget");
    expect(message?.message).toContain(`Error:     ${ErrorNames.InvalidInput}`);
    expect(message?.message).toContain(
      `no pods match selector "${missingPodsSelector}" in namespace "kube-system" at ${standIn.url}`,
    );
    expect(message?.message).toContain("lease released");
    expect(
      standIn.requests.some(
        (request) => request.resource === "pods" && request.query.labelSelector?.[0] === missingPodsSelector,
      ),
    ).toBe(true);
    expect((await stack.catalogue.listSnapshots("kube-missing")).snapshots).toEqual([]);
    expect(await stack.s3.listKeys(`${stack.prefix}/kube-missing/`)).toEqual([]);
    expect(await stack.s3.listOpenMultipartUploads()).toEqual([]);
    const lease = await stack.leases.getLease("kube-missing");
    expect(lease?.owner).toBeUndefined();
    expect(lease?.lastScheduledTime).toBe("2026-11-24T13:00:00.000Z");
  });
});
