// A throw-away CA with a server and a client certificate, made with openssl, for mutual-TLS tests.
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface TestCertificates {
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
}

export async function createTestCertificates(directory: string): Promise<TestCertificates> {
  const path = (name: string) => join(directory, name);
  await run(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"].concat([
      "-subj",
      "/CN=etcd-backup-test-ca",
      "-keyout",
      path("ca.key"),
      "-out",
      path("ca.crt"),
    ]),
  );
  await writeFile(
    path("server.ext"),
    // kubernetes: the name kubeadm's API server certificate always has, which the restore agent verifies.
    "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  await writeFile(path("client.ext"), "extendedKeyUsage=clientAuth\n");
  for (const [name, subject] of [
    ["server", "/CN=etcd-server"],
    ["client", "/CN=etcd-backup"],
  ] as const) {
    await run(
      "openssl",
      ["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject].concat([
        "-keyout",
        path(`${name}.key`),
        "-out",
        path(`${name}.csr`),
      ]),
    );
    await run(
      "openssl",
      ["x509", "-req", "-in", path(`${name}.csr`), "-CA", path("ca.crt")]
        .concat(["-CAkey", path("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", path(`${name}.ext`)])
        .concat(["-out", path(`${name}.crt`)]),
    );
  }
  return {
    caFile: path("ca.crt"),
    serverCertFile: path("server.crt"),
    serverKeyFile: path("server.key"),
    clientCertFile: path("client.crt"),
    clientKeyFile: path("client.key"),
  };
}
