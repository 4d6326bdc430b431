import { describe, expect, it } from "vitest";
import { apiReadinessNote } from "../../lambdas/core/restore/validate-restore-step.js";

const members = [
  { name: "cp-1", clientUrl: "https://10.0.1.10:2379", peerUrl: "https://10.0.1.10:2380" },
  { name: "cp-2", clientUrl: "https://10.0.1.11:2379", peerUrl: "https://10.0.1.11:2380" },
];

describe("the approval request's note on API readiness", () => {
  it("names the members whose readiness check is turned off (none)", () => {
    expect(
      apiReadinessNote({ apiServerManifest: "kube-apiserver.yaml", apiServerReadyUrl: "none", members }),
    ).toBe(
      "API readiness will not be checked on cp-1, cp-2 (apiServerReadyUrl is none): the restore ends once etcd is healthy and the API servers' manifests are back",
    );
    expect(
      apiReadinessNote({
        apiServerManifest: "kube-apiserver.yaml",
        apiServerReadyUrl: "none",
        members: [{ name: "cp-1", apiServerReadyUrl: "https://127.0.0.1:6443/readyz" }, { name: "cp-2" }],
      }),
    ).toMatch(/not be checked on cp-2 \(/);
  });

  it("says nothing when every member's readiness is checked (unset: from the manifest), or there is no API server", () => {
    expect(apiReadinessNote({ apiServerManifest: "kube-apiserver.yaml", members })).toBeUndefined();
    expect(
      apiReadinessNote({
        apiServerManifest: "kube-apiserver.yaml",
        apiServerReadyUrl: "https://127.0.0.1:6443/readyz",
        members,
      }),
    ).toBeUndefined();
    expect(apiReadinessNote({ apiServerManifest: "", members })).toBeUndefined();
  });
});
