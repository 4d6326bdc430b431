// The SSM Command document of the free-space probe (ssm-free-space.ts), owned by the stack: validate-restore
// runs on the control-plane nodes before anyone has approved the restore, so it may send this document,
// which runs `df` on the paths it is given and nothing else, rather than AWS-RunShellScript, which runs
// anything as root. The paths reach the shell unquoted: the parameter's pattern admits only absolute paths
// of letters, digits and `._/-`, separated by single spaces — no quote, `$`, glob or separator.

/** One path the document takes. */
const probePath = "/[A-Za-z0-9._/-]*";

/** What the document's dataDirs parameter admits, and so what the probe can measure. */
export const probePathPattern = `^${probePath}( ${probePath})*$`;

/** A path the document will take (one item of dataDirs). */
export function isProbePath(path: string): boolean {
  return new RegExp(`^${probePath}$`).test(path);
}

/**
 * `free <index> <KiB available>` for each data dir, measured as the agent measures it (df -Pk, POSIX) on
 * the data dir, or on its parent while it does not exist.
 */
export const freeSpaceScript = [
  "i=0",
  "for d in {{ dataDirs }}; do",
  '  [ -e "$d" ] || d=$(dirname -- "$d")',
  `  printf 'free %s %s\\n' "$i" "$(df -Pk -- "$d" | awk 'NR == 2 { print $4 }')"`,
  "  i=$((i + 1))",
  "done",
];

/** The document's content (schema 2.2, a Command document). */
export function freeSpaceDocumentContent(): Record<string, unknown> {
  return {
    schemaVersion: "2.2",
    description:
      "etcd-backup: the free space (KiB, df -Pk) of the filesystems that hold etcd's data dirs, read before a restore is approved. Runs df only.",
    parameters: {
      dataDirs: {
        type: "String",
        description: "The data dirs: absolute paths separated by single spaces",
        allowedPattern: probePathPattern,
      },
    },
    mainSteps: [
      {
        action: "aws:runShellScript",
        name: "freeSpace",
        inputs: { timeoutSeconds: "20", runCommand: freeSpaceScript },
      },
    ],
  };
}
