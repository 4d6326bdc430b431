// dynalite (an in-memory DynamoDB) on a free loopback port.
import type { AddressInfo, Server } from "node:net";
// @ts-expect-error dynalite ships no type definitions
import dynalite from "dynalite";
import { findFreePort } from "./free-port.js";

export interface LocalDynamoDb {
  endpoint: string;
  stop(): Promise<void>;
}

export async function startLocalDynamoDb(): Promise<LocalDynamoDb> {
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 }) as Server;
  const port = await findFreePort();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const { port: boundPort } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${boundPort}`,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
