// Certificate expiry of the etcd client certificate, on certificates made by openssl.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorNames } from "../../lambdas/core/errors.js";
import { checkCertificateExpiry, daysUntilExpiry } from "../../lambdas/core/kube/certificate-expiry.js";
import { makeTempDir } from "../support/temp-dir.js";
import { createTestCertificates } from "../support/test-certificates.js";

const run = promisify(execFile);
const dayMs = 86_400_000;

let work: { path: string; remove: () => Promise<void> };
let twoDayCertificate: string;
let caCertificate: string;
let yearCertificate: string;

beforeAll(async () => {
  work = await makeTempDir("cert-expiry");
  const certificates = await createTestCertificates(work.path);
  twoDayCertificate = await readFile(certificates.clientCertFile, "utf8");
  caCertificate = await readFile(certificates.caFile, "utf8");
  const yearFile = join(work.path, "year.crt");
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "400",
    "-subj",
    "/CN=kube-etcd-healthcheck-client",
    "-keyout",
    join(work.path, "year.key"),
    "-out",
    yearFile,
  ]);
  yearCertificate = await readFile(yearFile, "utf8");
});

afterAll(async () => {
  await work?.remove();
});

describe("client certificate expiry", () => {
  it("counts the days left until notAfter", () => {
    expect(daysUntilExpiry(twoDayCertificate)).toBeGreaterThan(1.99);
    expect(daysUntilExpiry(twoDayCertificate)).toBeLessThanOrEqual(2);
    expect(daysUntilExpiry(yearCertificate)).toBeGreaterThan(399.99);
    expect(daysUntilExpiry(Buffer.from(yearCertificate))).toBeLessThanOrEqual(400);
  });

  it("warns when fewer than 30 days are left, naming the subject and the date", () => {
    const warning = checkCertificateExpiry(twoDayCertificate);
    expect(warning).toMatchObject({
      code: "ClientCertificateExpiresSoon",
      daysLeft: 1,
      subject: "CN=etcd-backup",
    });
    expect(warning?.message).toMatch(/CN=etcd-backup\) expires on \d{4}-\d{2}-\d{2}T.*, in 1 day;/);
    expect(new Date(warning?.notAfter ?? 0).getTime() - Date.now()).toBeGreaterThan(1.99 * dayMs);
  });

  it("does not warn with more than 30 days left, and warns once the clock reaches the window", () => {
    expect(checkCertificateExpiry(yearCertificate)).toBeUndefined();
    const later = new Date(Date.now() + 375 * dayMs);
    expect(checkCertificateExpiry(yearCertificate, { now: later })).toMatchObject({ daysLeft: 24 });
  });

  it("refuses a certificate that has expired", () => {
    const later = new Date(Date.now() + 3 * dayMs);
    expect(daysUntilExpiry(twoDayCertificate, later)).toBeLessThan(0);
    expect(() => checkCertificateExpiry(twoDayCertificate, { now: later })).toThrow(
      expect.objectContaining({
        name: ErrorNames.InvalidInput,
        message: expect.stringContaining("expired on"),
      }),
    );
  });

  it("reads the leaf, the first certificate of a bundle", () => {
    const bundle = `${twoDayCertificate}${caCertificate}`;
    expect(checkCertificateExpiry(bundle)?.subject).toBe("CN=etcd-backup");
  });

  it("refuses what is not a PEM certificate", () => {
    expect(() =>
      daysUntilExpiry("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
    ).toThrow(expect.objectContaining({ name: ErrorNames.InvalidInput }));
  });
});
