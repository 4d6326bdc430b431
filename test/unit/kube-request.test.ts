// The one JSON request to the Kubernetes API: a refusal keeps the API server's words and status, a
// server that never answers fails within the timeout, and an answer that is not JSON is not taken for one.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { isKubeAnswer, KubeRequestError, kubeJsonRequest } from "../../lambdas/core/kube/kube-request.js";

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

async function configFor(handler: Parameters<typeof createServer>[1]): Promise<KubeConfig> {
  server = createServer(handler);
  await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
  const config = new KubeConfig();
  config.loadFromOptions({
    // Plain HTTP needs skipTLSVerify in client-node; the credentials still travel as a bearer token.
    clusters: [
      {
        name: "c",
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: "u", token: "secret-token" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return config;
}

/** The KubeRequestError a request fails with (the test fails if it succeeds or fails otherwise). */
async function failureOf(request: Promise<unknown>): Promise<KubeRequestError> {
  const error = await request.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(KubeRequestError);
  return error as KubeRequestError;
}

describe("kubeJsonRequest", () => {
  it("sends the token and the JSON body, and parses the answer", async () => {
    let seen: { method?: string; url?: string; authorization?: string; body?: string } = {};
    const config = await configFor((request, response) => {
      let body = "";
      request.on("data", (chunk) => {
        body += chunk;
      });
      request.on("end", () => {
        seen = {
          method: request.method,
          url: request.url,
          authorization: request.headers.authorization,
          body,
        };
        response.writeHead(201, { "Content-Type": "application/json" }).end('{"kind":"Pod"}');
      });
    });
    const answer = await kubeJsonRequest(config, {
      method: "POST",
      path: "/api/v1/namespaces/kube-system/pods",
      body: { kind: "Pod", metadata: { name: "p" } },
      where: "create pod",
    });
    expect(answer).toEqual({ kind: "Pod" });
    expect(seen).toEqual({
      method: "POST",
      url: "/api/v1/namespaces/kube-system/pods",
      authorization: "Bearer secret-token",
      body: '{"kind":"Pod","metadata":{"name":"p"}}',
    });
  });

  it("a refusal carries the status and the metav1.Status message; a proxy's HTML page its first line", async () => {
    const config = await configFor((request, response) => {
      if (request.url?.includes("status")) {
        response
          .writeHead(409, { "Content-Type": "application/json" })
          .end('{"kind":"Status","code":409,"message":"pods \\"p\\" already exists"}');
      } else {
        response.writeHead(502, "Bad Gateway").end("<html>502 Bad Gateway</html>\n<body>…</body>");
      }
    });
    const conflict = await failureOf(
      kubeJsonRequest(config, { method: "GET", path: "/status", where: "read" }),
    );
    expect(isKubeAnswer(conflict, 409)).toBe(true);
    expect(conflict.message).toBe('read: the Kubernetes API answered 409: pods "p" already exists');
    const gateway = await failureOf(
      kubeJsonRequest(config, { method: "GET", path: "/other", where: "read" }),
    );
    expect(gateway.failure).toEqual({
      kind: "refused",
      httpStatus: 502,
      message: "<html>502 Bad Gateway</html>",
    });
  });

  it("fails within its timeout when the API server never answers", async () => {
    const config = await configFor(() => {
      // accepts the request, never answers
    });
    const started = Date.now();
    const error = await failureOf(
      kubeJsonRequest(config, {
        method: "GET",
        path: "/hang",
        where: "list pods",
        timeoutMs: 200,
      }),
    );
    expect(error.failure.kind).toBe("unreachable");
    expect(error.message).toBe("list pods: the Kubernetes API could not be reached: no answer within 0.2 s");
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("says it timed out when the answer stalls half way", async () => {
    const config = await configFor((_request, response) => {
      response.writeHead(200, { "Content-Type": "application/json" });
      response.write('{"kind":"PodList","items":[');
      // never finishes
    });
    const error = await failureOf(
      kubeJsonRequest(config, { method: "GET", path: "/slow", where: "list pods", timeoutMs: 200 }),
    );
    expect(error.failure.kind).toBe("unreachable");
    expect(error.message).toBe("list pods: the Kubernetes API could not be reached: no answer within 0.2 s");
  });

  it("an answer that is not JSON is a failure, not data", async () => {
    const config = await configFor((_request, response) => response.writeHead(200).end("ok"));
    const error = await failureOf(kubeJsonRequest(config, { method: "GET", path: "/", where: "read" }));
    expect(error.message).toBe("read: the Kubernetes API could not be reached: the answer is not JSON: ok");
  });
});
