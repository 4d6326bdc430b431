// How long an etcd client certificate has left. kubeadm's expire after a year and are renewed only by
// `kubeadm certs renew` or an upgrade, so a backup that uses one warns a month ahead.
import { X509Certificate } from "node:crypto";
import { InvalidInputError } from "../errors.js";

export const expiryWarningDays = 30;

export interface CertificateExpiryWarning {
  code: "ClientCertificateExpiresSoon";
  subject: string;
  /** ISO 8601. */
  notAfter: string;
  /** Whole days left, rounded down. */
  daysLeft: number;
  message: string;
}

/** Days (fractional) from `now` until the certificate's notAfter; negative once it has expired. */
export function daysUntilExpiry(pemCertificate: string | Buffer, now: Date = new Date()): number {
  return daysFrom(now, notAfterOf(pemCertificate));
}

function daysFrom(now: Date, notAfter: Date): number {
  return (notAfter.getTime() - now.getTime()) / 86_400_000;
}

/**
 * A warning when the certificate expires within `warnWithinDays`; throws InvalidInputError when it has
 * already expired (the TLS handshake would fail with a less helpful message).
 */
export function checkCertificateExpiry(
  pemCertificate: string | Buffer,
  options: { what?: string; now?: Date; warnWithinDays?: number } = {},
): CertificateExpiryWarning | undefined {
  return readCertificateExpiry(pemCertificate, options).warning;
}

/** As checkCertificateExpiry, with the whole days left (rounded down) that it read, warning or not. */
export function readCertificateExpiry(
  pemCertificate: string | Buffer,
  options: { what?: string; now?: Date; warnWithinDays?: number } = {},
): { daysLeft: number; warning?: CertificateExpiryWarning } {
  const what = options.what ?? "the etcd client certificate";
  const certificate = parse(pemCertificate);
  const notAfter = new Date(certificate.validTo);
  const days = daysFrom(options.now ?? new Date(), notAfter);
  const subject = certificate.subject.replace(/\n/g, ", ");
  if (days <= 0) {
    throw new InvalidInputError(
      `${what} (${subject}) expired on ${notAfter.toISOString()}; renew it (kubeadm: kubeadm certs renew)`,
    );
  }
  const daysLeft = Math.floor(days);
  if (days >= (options.warnWithinDays ?? expiryWarningDays)) return { daysLeft };
  return {
    daysLeft,
    warning: {
      code: "ClientCertificateExpiresSoon",
      subject,
      notAfter: notAfter.toISOString(),
      daysLeft,
      message: `${what} (${subject}) expires on ${notAfter.toISOString()}, in ${daysLeft} day${daysLeft === 1 ? "" : "s"}; renew it before backups fail`,
    },
  };
}

function notAfterOf(pemCertificate: string | Buffer): Date {
  return new Date(parse(pemCertificate).validTo);
}

function parse(pemCertificate: string | Buffer): X509Certificate {
  try {
    // The first certificate of a PEM bundle: the leaf, which is the one presented.
    return new X509Certificate(pemCertificate);
  } catch (error) {
    throw new InvalidInputError(`the client certificate is not a PEM X.509 certificate: ${String(error)}`, {
      cause: error,
    });
  }
}
