// Requests to the Kubernetes API with a KubeConfig's own credentials (`applyToHTTPSOptions`: CA, client
// certificate, bearer or exec-plugin token, proxy agent), and the one error every such request fails
// with. The few REST calls the product makes (core-v1-api.ts) and the streaming WebSockets
// (kube-websocket.ts) share them; @kubernetes/client-node's generated API client is not used, because
// it alone is half a megabyte of every bundle that talks to Kubernetes (docs/benchmarks.md, cold start).
import type { IncomingMessage, RequestOptions } from "node:http";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";

/** Why a request to the API server failed. */
export type KubeRequestFailure =
  | {
      kind: "refused";
      /** The HTTP status of the answer (401, 403, 404, 409, 400, 5xx). */
      httpStatus: number;
      /** The `message` of the metav1.Status body, or the body's start, or the reason phrase. */
      message: string;
    }
  | { kind: "unreachable"; message: string; cause?: unknown };

export class KubeRequestError extends Error {
  constructor(
    readonly failure: KubeRequestFailure,
    where: string,
  ) {
    super(
      failure.kind === "refused"
        ? `${where}: the Kubernetes API answered ${failure.httpStatus}: ${failure.message}`
        : `${where}: the Kubernetes API could not be reached: ${failure.message}`,
      { cause: failure.kind === "unreachable" ? failure.cause : undefined },
    );
  }
  override readonly name = "KubeRequestError";
}

/** Whether `error` is the API server's answer `httpStatus` (e.g. 404 for a name it does not know). */
export function isKubeAnswer(error: unknown, httpStatus: number): boolean {
  return (
    error instanceof KubeRequestError &&
    error.failure.kind === "refused" &&
    error.failure.httpStatus === httpStatus
  );
}

/**
 * The current cluster's server URL and the request options carrying the credentials. Applied per request,
 * so that a token an exec plugin refreshes (EKS) is fresh for each one.
 */
export async function credentialedRequestOptions(
  config: KubeConfig,
  where: string,
): Promise<{ server: string; options: RequestOptions & Record<string, unknown> }> {
  const cluster = config.getCurrentCluster();
  if (!cluster) {
    throw new KubeRequestError(
      { kind: "unreachable", message: "the kubeconfig has no current cluster" },
      where,
    );
  }
  const options: RequestOptions & Record<string, unknown> = {};
  try {
    await config.applyToHTTPSOptions(options as Parameters<KubeConfig["applyToHTTPSOptions"]>[0]);
  } catch (error) {
    throw new KubeRequestError(
      { kind: "unreachable", message: `preparing credentials failed: ${String(error)}`, cause: error },
      where,
    );
  }
  return { server: cluster.server.replace(/\/+$/, ""), options };
}

export interface KubeJsonRequest {
  method: "GET" | "POST" | "DELETE";
  /** Path and query below the server URL, e.g. `/api/v1/namespaces/x/pods?labelSelector=...`. */
  path: string;
  body?: unknown;
  /** Names the request in error messages. */
  where: string;
  /** Default 30 s: a hung API server fails the call rather than the Lambda function's whole timeout. */
  timeoutMs?: number;
}

/** The most of an error body kept: a metav1.Status is small; an HTML error page from a proxy is not. */
const errorBodyLimit = 64 * 1024;

/** One JSON request; resolves with the parsed 2xx body, rejects with a KubeRequestError. */
export async function kubeJsonRequest<T>(config: KubeConfig, call: KubeJsonRequest): Promise<T> {
  const { server, options } = await credentialedRequestOptions(config, call.where);
  let url: URL;
  try {
    url = new URL(`${server}${call.path}`);
  } catch (error) {
    throw new KubeRequestError({ kind: "unreachable", message: String(error), cause: error }, call.where);
  }
  const payload = call.body === undefined ? undefined : Buffer.from(JSON.stringify(call.body));
  const headers: Record<string, string | number> = {
    ...(options.headers as Record<string, string> | undefined),
    Accept: "application/json",
  };
  if (payload) {
    headers["Content-Type"] = "application/json";
    headers["Content-Length"] = payload.length;
  }
  const send = url.protocol === "http:" ? httpRequest : httpsRequest;
  const timeoutMs = call.timeoutMs ?? 30_000;
  return new Promise<T>((resolve, reject) => {
    // Once the answer has begun, a destroyed request reaches the response as a bare "aborted": the
    // timeout says so itself.
    let timedOut = false;
    const fail = (failure: KubeRequestFailure) =>
      reject(
        new KubeRequestError(
          timedOut && failure.kind === "unreachable"
            ? { ...failure, message: `no answer within ${timeoutMs / 1000} s` }
            : failure,
          call.where,
        ),
      );
    const request = send(url, { ...options, method: call.method, headers }, (response) => {
      const status = response.statusCode ?? 0;
      if (status < 200 || status > 299) {
        void readBounded(response, errorBodyLimit).then((body) =>
          fail({ kind: "refused", httpStatus: status, message: statusMessage(body, response.statusMessage) }),
        );
        return;
      }
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("error", (error) => fail({ kind: "unreachable", message: error.message, cause: error }));
      response.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        try {
          resolve((text === "" ? undefined : JSON.parse(text)) as T);
        } catch (error) {
          fail({
            kind: "unreachable",
            message: `the answer is not JSON: ${text.slice(0, 200)}`,
            cause: error,
          });
        }
      });
    });
    request.setTimeout(timeoutMs, () => {
      timedOut = true;
      request.destroy(new Error(`no answer within ${timeoutMs / 1000} s`));
    });
    request.on("error", (error: NodeJS.ErrnoException) =>
      fail({
        kind: "unreachable",
        message: [error.code, error.message].filter(Boolean).join(" "),
        cause: error,
      }),
    );
    request.end(payload);
  });
}

/** Up to `limit` bytes of a response body, as text; never rejects. */
export function readBounded(response: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => resolve(Buffer.concat(chunks).toString("utf8"));
    response.on("data", (chunk: Buffer) => {
      if (size < limit) chunks.push(chunk.subarray(0, limit - size));
      size += chunk.length;
      if (size >= limit) done();
    });
    response.on("end", done);
    response.on("error", done);
    response.on("close", done);
  });
}

/** The `message` of a metav1.Status body, else the body's first line, else the HTTP reason phrase. */
export function statusMessage(body: string, reasonPhrase: string | undefined): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === "string" && parsed.message !== "") return parsed.message;
  } catch {
    // not JSON: fall through
  }
  const firstLine = body.split("\n", 1)[0]?.trim().slice(0, 500);
  return firstLine || reasonPhrase || "no reason given";
}
