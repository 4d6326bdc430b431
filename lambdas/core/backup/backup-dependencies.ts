// Everything the backup steps touch, passed in: the Lambda handlers build it from the environment once
// per cold start, the local runner and the tests from local endpoints.
import type { S3Client } from "@aws-sdk/client-s3";
import type { KubeConfig } from "@kubernetes/client-node";
import type { CatalogueRepository } from "../catalogue/catalogue-repository.js";
import type { ClusterLeases } from "../catalogue/cluster-lease.js";
import type { Target, TargetsFile } from "../config/target-config.js";
import type { EtcdTlsMaterial } from "../etcd/etcd-client.js";
import type { MetricName } from "../metric-names.js";

export type MetricUnitName = "Count" | "Bytes" | "Seconds" | "Milliseconds" | "Bytes/Second";

export interface StepReporter {
  /** A progress or outcome line; never given secrets. */
  info(message: string, details?: Record<string, unknown>): void;
  warn(message: string, details?: Record<string, unknown>): void;
  /** A metric for the cluster. */
  metric(name: MetricName, unit: MetricUnitName, value: number): void;
  /**
   * A long step's bytes so far, at every chunk (cheap when nobody listens): for a live display where
   * the step runs in the displaying process, as locally. The log hears of it every 10 s through `info`.
   */
  progress?(activity: string, bytes: number, totalBytes?: number): void;
}

export interface BackupDependencies {
  s3: S3Client;
  catalogue: CatalogueRepository;
  leases: ClusterLeases;
  bucket: string;
  prefix: string;
  kmsKeyId?: string | undefined;
  loadTargets(): Promise<TargetsFile>;
  /** TLS material for a target's etcd (from its Secrets Manager secret), or undefined for plain TCP. */
  loadEtcdTls(target: Target): Promise<EtcdTlsMaterial | undefined>;
  /**
   * The Kubernetes API client configuration of a target with `eks` or `kubeconfig` access. Optional so
   * that deployments and tests with direct access only need not provide it; a Kubernetes target
   * without it fails with InvalidInputError.
   */
  loadKubeConfig?(target: Target): Promise<KubeConfig>;
  /** Where verification stages the object it reads back. */
  stagingDir?: string | undefined;
  now(): Date;
  reporter: StepReporter;
}

/** How long a backup's lease lasts: the state machine's own timeout plus a margin. */
export const backupLeaseSeconds = 3600 + 300;
/** A restore holds the lease from approval to the end: its phases, each bounded, fit in 4 hours. */
export const restoreLeaseSeconds = 4 * 3600 + 900;

export const silentReporter: StepReporter = { info() {}, warn() {}, metric() {} };
