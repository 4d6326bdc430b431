// A failed request to the Kubernetes API (kube-request.ts, kube-websocket.ts) as the product's named
// error. Types only from the Kubernetes client: the steps that merely translate its failures (the pod
// executor's) must not evaluate it at load.
import type { KubeConfig } from "@kubernetes/client-node";
import {
  describeError,
  EtcdBackupError,
  EtcdUnavailableError,
  InvalidInputError,
  KubernetesAccessDeniedError,
  KubernetesApiError,
} from "../errors.js";
import { KubeRequestError } from "./kube-request.js";

/** The API server a KubeConfig talks to, for messages. */
export function apiServerOf(config: KubeConfig): string {
  return config.getCurrentCluster()?.server ?? "(no server)";
}

/**
 * A failed call to the Kubernetes API as a named error: 401/403 are refusals (never retried), 404 a
 * wrong name, 429/5xx and network failures transient. The API server's own message is kept: for a
 * 403 it names the verb and resource that RBAC refused.
 */
export function kubernetesApiFailure(error: unknown, what: string, config: KubeConfig): EtcdBackupError {
  if (error instanceof EtcdBackupError) return error;
  const server = apiServerOf(config);
  if (error instanceof KubeRequestError && error.failure.kind === "refused") {
    const code = error.failure.httpStatus;
    const statusMessage = error.failure.message;
    if (code === 401) {
      return new KubernetesAccessDeniedError(
        `${what}: the Kubernetes API at ${server} did not accept the credentials (401 Unauthorized${
          statusMessage && statusMessage !== "Unauthorized" ? `: ${statusMessage}` : ""
        }); check the token or client certificate, or for EKS the access entry of the identity`,
        { cause: error },
      );
    }
    if (code === 403) {
      return new KubernetesAccessDeniedError(
        `${what}: forbidden by the Kubernetes API at ${server}${statusMessage ? `: ${statusMessage}` : ""} (see deploy/rbac/)`,
        { cause: error },
      );
    }
    const detail = `${what}: the Kubernetes API at ${server} answered ${code}${statusMessage ? `: ${statusMessage}` : ""}`;
    if (code === 429 || code >= 500) return new KubernetesApiError(detail, { cause: error });
    return new InvalidInputError(detail, { cause: error });
  }
  const reason = error instanceof KubeRequestError ? error.failure.message : describeError(error);
  return new KubernetesApiError(`${what}: the Kubernetes API at ${server} cannot be reached: ${reason}`, {
    cause: error,
  });
}

/**
 * The named error for a WebSocket that could not be opened: 401/403 are the identity or its RBAC (not
 * transient); 404 is the pod gone (transient: discovery finds the member again); 400 a request that cannot
 * succeed (e.g. no such container); 429, 5xx and network failures are the API's (transient).
 */
export function describeConnectError(error: unknown): EtcdBackupError {
  if (!(error instanceof KubeRequestError)) {
    return new KubernetesApiError(error instanceof Error ? error.message : String(error), { cause: error });
  }
  const failure = error.failure;
  if (failure.kind === "unreachable") return new KubernetesApiError(error.message, { cause: error });
  switch (failure.httpStatus) {
    case 401:
    case 403:
      return new KubernetesAccessDeniedError(error.message, { cause: error });
    case 404:
      return new EtcdUnavailableError(error.message, { cause: error });
    case 400:
      return new InvalidInputError(error.message, { cause: error });
    default:
      return new KubernetesApiError(error.message, { cause: error });
  }
}
