import { readFile } from "node:fs/promises";
import { InvalidInputError } from "../lambdas/core/errors.js";
import type { EtcdTlsMaterial } from "../lambdas/core/etcd/etcd-client.js";

/** Reads --cacert/--cert/--key (etcdctl's flag names) into TLS material. */
export async function readTlsFiles(flags: {
  cacert?: string;
  cert?: string;
  key?: string;
}): Promise<EtcdTlsMaterial | undefined> {
  if (!flags.cacert && !flags.cert && !flags.key) return undefined;
  if (Boolean(flags.cert) !== Boolean(flags.key))
    throw new InvalidInputError("--cert and --key must be given together");
  const read = async (flag: string, path: string | undefined) => {
    if (!path) return undefined;
    try {
      return await readFile(path);
    } catch (error) {
      throw new InvalidInputError(`cannot read ${flag} ${path}: ${(error as Error).message}`);
    }
  };
  return {
    ca: await read("--cacert", flags.cacert),
    cert: await read("--cert", flags.cert),
    key: await read("--key", flags.key),
  };
}
