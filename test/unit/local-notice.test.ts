// The notices of a local execution (demo, `backup|restore --local`): the handlers' own text, with the
// console link, which no local execution has, replaced by what shows it.
import { describe, expect, it } from "vitest";
import { localExecutionArn } from "../../cli/local/local-state-machine.js";
import { localNotice } from "../../cli/local/local-workflows.js";
import { type BackupDependencies, silentReporter } from "../../lambdas/core/backup/backup-dependencies.js";
import { markBackupFailed } from "../../lambdas/core/backup/mark-failed-step.js";

/** The on-call notice the MarkFailed handler composes for a backup that failed before it took a lease. */
async function failureNotice(executionArn: string) {
  // No lease and no snapshot id: the failure path touches neither S3 nor the catalogue.
  const dependencies = { reporter: silentReporter } as unknown as BackupDependencies;
  const { subject, message } = await markBackupFailed(dependencies, { cluster: "local" }, executionArn, {
    failure: { Error: "EtcdUnavailableError", Cause: '{"errorMessage":"etcd at 127.0.0.1:1 refused"}' },
  });
  return { topicArn: "arn:aws:sns:local:000000000000:etcd-backup-on-call", subject, message };
}

describe("a local execution's notice", () => {
  it("names the status command and the local ARN where a deployed one links to the console", async () => {
    const executionArn = localExecutionArn("backup", "backup-local-1764000000000");
    const notice = await failureNotice(executionArn);
    expect(notice.message).toContain("console.aws.amazon.com");

    const local = localNotice(notice, executionArn, { recorded: true });
    expect(local.message).not.toContain("console.aws.amazon.com");
    expect(local.message).toContain(`Execution: ${executionArn}\n`);
    expect(local.message).toContain(
      "\nStatus:    etcd-backup status backup-local-1764000000000 --local (a local execution has no console page)",
    );
    // Everything else is the handler's text, line for line.
    const changed = local.message
      .split("\n")
      .filter((line, index) => line !== notice.message.split("\n")[index]);
    expect(changed).toHaveLength(1);
    expect(local.subject).toBe(notice.subject);
  });

  it("says there is no console page for an execution `status --local` cannot find (the demo's, a nested one)", async () => {
    const executionArn = localExecutionArn("backup", "5f1e0c1a-0000-4000-8000-000000000000");
    const local = localNotice(await failureNotice(executionArn), executionArn, { recorded: false });
    expect(local.message).not.toContain("console.aws.amazon.com");
    expect(local.message).not.toContain("etcd-backup status");
    expect(local.message).toContain("\nConsole:   none: a local execution has no console page");
  });

  it("leaves a deployed execution's console link as it is", async () => {
    const deployed = "arn:aws:states:eu-west-1:111122223333:execution:Backup:backup-prod-1";
    const notice = await failureNotice(deployed);
    expect(notice.message).toContain(
      `Console:   https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/${deployed}`,
    );
    const local = localExecutionArn("backup", "backup-prod-1");
    expect(localNotice(notice, local, { recorded: true })).toEqual(notice);
  });
});
