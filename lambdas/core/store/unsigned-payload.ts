// SigV4 signs a Buffer body by hashing it with SHA-256 (x-amz-content-sha256), which for a snapshot part
// is a second SHA-256 of every byte after the integrity tap's — the costliest work on the data path.
// S3 accepts UNSIGNED-PAYLOAD instead; the part's CRC32C additional checksum, which S3 verifies before
// storing the part, still proves its bytes, and TLS protects them in transit.
import type { UploadPartCommand } from "@aws-sdk/client-s3";

/** The SigV4 header that carries the payload's hash, and the value that says it is not signed. */
export const contentSha256Header = "x-amz-content-sha256";
export const unsignedPayload = "UNSIGNED-PAYLOAD";

/** Makes the command's signature cover its headers but not its payload's SHA-256. */
export function signWithoutPayloadHash(command: UploadPartCommand): void {
  command.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers[contentSha256Header] = unsignedPayload;
      return next(args);
    },
    { step: "build", name: "signWithoutPayloadHash", override: true },
  );
}
