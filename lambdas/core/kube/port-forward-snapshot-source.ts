// The `grpc` source through a Kubernetes port-forward: etcd's Maintenance.Snapshot read over a local
// tunnel to the etcd pod's client port. It needs nothing in the image (kubeadm's etcd image is distroless),
// only `create` on pods/portforward. The connection goes to 127.0.0.1, so the server certificate is checked
// against `tls.serverName` when its names do not include 127.0.0.1. The framing is tested byte for byte
// against FACTS.md §5 and the stand-in API server, but no real kubelet has carried it yet: unproven on a live
// cluster until it has been run on one.
import type { KubeConfig } from "@kubernetes/client-node";
import {
  type EtcdBackupError,
  EtcdUnavailableError,
  InvalidInputError,
  KubernetesAccessDeniedError,
  KubernetesApiError,
} from "../errors.js";
import { createEtcdClient, type EtcdTlsMaterial } from "../etcd/etcd-client.js";
import { createGrpcSnapshotSource } from "../etcd/grpc-snapshot-source.js";
import type { SnapshotSource } from "../snapshot/snapshot-source.js";
import { type CertificateExpiryWarning, checkCertificateExpiry } from "./certificate-expiry.js";
import { openPortForwardTunnel, type PortForwardTunnel } from "./port-forward-tunnel.js";

export interface PortForwardSnapshotSourceOptions {
  kubeConfig: KubeConfig;
  pod: { namespace: string; name: string };
  /** etcd's client port inside the pod. Default 2379. */
  port?: number;
  /** mTLS material for etcd; without it the member is spoken to in plain HTTP/2. */
  tls?: EtcdTlsMaterial;
  /** How long a unary call (Status) may take. */
  callTimeoutMs?: number;
  /** Receives warnings as they arise (also listed in `warnings`), for the caller to log and alarm on. */
  onWarning?: (warning: CertificateExpiryWarning) => void;
  /** The clock for the certificate check. */
  now?: Date;
}

export interface PortForwardSnapshotSource extends SnapshotSource {
  /** The client certificate's expiry warning, if it expires within 30 days. */
  readonly warnings: readonly CertificateExpiryWarning[];
  readonly tunnel: PortForwardTunnel;
}

export async function createPortForwardSnapshotSource(
  options: PortForwardSnapshotSourceOptions,
): Promise<PortForwardSnapshotSource> {
  const { pod } = options;
  const port = options.port ?? 2379;
  const warnings: CertificateExpiryWarning[] = [];
  if (options.tls?.cert) {
    const warning = checkCertificateExpiry(options.tls.cert, { now: options.now });
    if (warning) {
      warnings.push(warning);
      options.onWarning?.(warning);
    }
  }
  if (options.tls?.cert && !options.tls.key) {
    throw new InvalidInputError("the etcd client certificate was given without its key");
  }
  const tunnel = await openPortForwardTunnel({ kubeConfig: options.kubeConfig, pod, port });
  const endpoint = `${options.tls ? "https" : "http"}://127.0.0.1:${tunnel.localPort}`;
  const client = createEtcdClient({ endpoint, tls: options.tls, callTimeoutMs: options.callTimeoutMs });
  const grpcSource = createGrpcSnapshotSource(client);
  const description = `pod ${pod.namespace}/${pod.name} port ${port} (grpc through port-forward)`;

  return {
    description,
    warnings,
    tunnel,
    async status() {
      const seen = tunnel.errors.length;
      try {
        return await grpcSource.status();
      } catch (error) {
        throw withTunnelErrors(error, tunnel.errors.slice(seen));
      }
    },
    async hashKV(revision) {
      const seen = tunnel.errors.length;
      try {
        return await grpcSource.hashKV(revision);
      } catch (error) {
        throw withTunnelErrors(error, tunnel.errors.slice(seen));
      }
    },
    openStream() {
      const seen = tunnel.errors.length;
      const stream = grpcSource.openStream();
      // Registered before the pipeline's own listener, so the reason the tunnel saw is in the message
      // the caller gets (gRPC alone reports only "connection dropped").
      stream.on("error", (error: Error) => {
        const reasons = tunnel.errors.slice(seen);
        if (reasons.length > 0) error.message = `${error.message}; ${describeAll(reasons)}`;
      });
      return stream;
    },
    close() {
      grpcSource.close();
      void tunnel.close();
    },
  };
}

/**
 * The gRPC error with what the tunnel saw. When the port-forward itself failed (refused, or the API out of
 * reach), that is the failure to report under its own name: gRPC only saw its connections drop.
 */
function withTunnelErrors(error: unknown, reasons: readonly EtcdBackupError[]): unknown {
  if (reasons.length === 0 || !(error instanceof Error)) return error;
  const message = `${error.message}; ${describeAll(reasons)}`;
  const options = { cause: error };
  const tunnelFailure = reasons.find((reason) => !(reason instanceof EtcdUnavailableError));
  if (tunnelFailure instanceof KubernetesAccessDeniedError)
    return new KubernetesAccessDeniedError(message, options);
  if (tunnelFailure instanceof KubernetesApiError) return new KubernetesApiError(message, options);
  if (tunnelFailure instanceof InvalidInputError) return new InvalidInputError(message, options);
  if (error instanceof EtcdUnavailableError) return new EtcdUnavailableError(message, options);
  error.message = message;
  return error;
}

function describeAll(reasons: readonly EtcdBackupError[]): string {
  const distinct = [...new Set(reasons.map((reason) => reason.message))];
  return `port-forward: ${distinct.join("; ")}`;
}
