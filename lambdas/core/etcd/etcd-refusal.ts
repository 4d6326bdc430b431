// Which etcd failures are refusals of the product's identity (not retried), told by their text: shared by
// the gRPC client and the exec source, which only sees etcdctl's stderr. No gRPC import, for the bundles.

/** TLS failures that stay until the CA, certificate or key changes: etcd rejected ours, or we its. */
const tlsRefusal =
  /alert (bad certificate|unknown ca|certificate (required|expired|revoked|unknown))|unable to verify|self[- ]signed certificate|certificate verify failed|certificate has expired|does not match certificate's altnames|x509: certificate/i;

/**
 * etcd's auth errors: `etcdserver: …` as unary calls and etcdctl report them, and `auth: …` as etcd 3.4
 * ends a Snapshot stream it refuses to a user without the root role (code UNKNOWN, not PERMISSION_DENIED).
 */
const authRefusal =
  /\b(auth|etcdserver): (permission denied|user name is empty|invalid auth token|authentication failed)/i;

/**
 * Whether what a failed call said (a gRPC error's text, or etcdctl's stderr in the etcd pod) is a refusal
 * of the product's identity, which no retry changes.
 */
export function isRefusalText(text: string): boolean {
  return tlsRefusal.test(text) || authRefusal.test(text);
}
