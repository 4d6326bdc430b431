// etcd's auth turned on over a TLS cluster: a root user with a password, and the test client
// certificate's CN (etcd-backup) as a user with read access only, which is what it then authenticates as.
// etcd refuses Maintenance.Snapshot and HashKV to anyone without the root role.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { EtcdCluster } from "./etcd-cluster.js";

export const etcdRootPassword = "root-password";

export async function enableEtcdAuthWithReaderClient(cluster: EtcdCluster): Promise<void> {
  const etcdctl = (...args: string[]) =>
    promisify(execFile)("etcdctl", [...cluster.etcdctlArgs(), ...args], {
      env: { ...process.env, ETCDCTL_API: "3" },
    });
  await etcdctl("user", "add", `root:${etcdRootPassword}`);
  await etcdctl("user", "add", "etcd-backup:unused-password");
  await etcdctl("role", "add", "reader");
  await etcdctl("role", "grant-permission", "reader", "--prefix=true", "read", "/");
  await etcdctl("user", "grant-role", "etcd-backup", "reader");
  await etcdctl("auth", "enable");
}
