// A step's way to a target's Kubernetes API. Types only from the Kubernetes client: importing this
// module evaluates none of it, so steps that may serve direct targets load fast.
import type { KubeConfig } from "@kubernetes/client-node";
import type { BackupDependencies } from "../backup/backup-dependencies.js";
import type { Target } from "../config/target-config.js";
import { InvalidInputError } from "../errors.js";

/** The step's Kubernetes access for a target, or a clear error where the deployment has none. */
export function loadKubeConfig(
  dependencies: Pick<BackupDependencies, "loadKubeConfig">,
  target: Target,
): Promise<KubeConfig> {
  if (!dependencies.loadKubeConfig) {
    throw new InvalidInputError(
      `target ${target.name} uses ${target.access.kind} access, but this deployment cannot reach a Kubernetes API`,
    );
  }
  return dependencies.loadKubeConfig(target);
}
