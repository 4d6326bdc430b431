// A kubeconfig for kubectl and @kubernetes/client-node that points at the stand-in.
import { readFile, writeFile } from "node:fs/promises";

export interface KubeconfigCredentials {
  token?: string;
  clientCertificateFile?: string;
  clientKeyFile?: string;
}

export interface KubeconfigTarget {
  server: string;
  caFile?: string;
  /** The context's namespace, if any. */
  namespace?: string;
}

export async function writeKubeconfig(
  path: string,
  target: KubeconfigTarget,
  credentials: KubeconfigCredentials,
): Promise<string> {
  // JSON strings are valid YAML scalars, so values need no further quoting.
  const quote = (value: string) => JSON.stringify(value);
  const base64Of = async (file: string) => quote((await readFile(file)).toString("base64"));
  const lines = [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: stand-in",
    "  cluster:",
    `    server: ${quote(target.server)}`,
  ];
  if (target.caFile) lines.push(`    certificate-authority-data: ${await base64Of(target.caFile)}`);
  lines.push(
    "contexts:",
    "- name: stand-in",
    "  context:",
    "    cluster: stand-in",
    "    user: stand-in-user",
  );
  if (target.namespace) lines.push(`    namespace: ${quote(target.namespace)}`);
  lines.push("current-context: stand-in", "users:", "- name: stand-in-user", "  user:");
  if (credentials.token !== undefined) lines.push(`    token: ${quote(credentials.token)}`);
  if (credentials.clientCertificateFile && credentials.clientKeyFile) {
    lines.push(`    client-certificate-data: ${await base64Of(credentials.clientCertificateFile)}`);
    lines.push(`    client-key-data: ${await base64Of(credentials.clientKeyFile)}`);
  }
  if (credentials.token === undefined && !credentials.clientCertificateFile) lines.push("    {}");
  await writeFile(path, `${lines.join("\n")}\n`, { mode: 0o600 });
  return path;
}
