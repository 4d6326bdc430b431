// Systems Manager's Run Command on this machine, for the local executor: AWS-RunShellScript's lines run
// as one bash script in a local process, and each invocation answers as GetCommandInvocation does —
// InProgress while it runs, then Success or Failed, with the first 8,000 characters of its stderr once it
// has ended (empty before, as Systems Manager's is).
import { type ChildProcess, spawn } from "node:child_process";

/** What Systems Manager keeps of a command's stderr. */
const stderrLimit = 8000;

interface LocalCommand {
  child: ChildProcess;
  stderr: string;
}

export class LocalRunCommand {
  private readonly commands = new Map<string, LocalCommand>();

  constructor(private readonly env: Record<string, string>) {}

  /** The processes started, for the caller to wait for and stop. */
  get processes(): ChildProcess[] {
    return [...this.commands.values()].map((command) => command.child);
  }

  send(parameters: { Parameters: { commands: string[] } }): { Command: { CommandId: string } } {
    // RunShellScript runs the lines as one script; the agent then lives as long as the restore.
    const child = spawn("bash", ["-c", parameters.Parameters.commands.join("\n")], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, ...this.env },
    });
    const command: LocalCommand = { child, stderr: "" };
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      command.stderr += chunk.slice(0, Math.max(0, stderrLimit - command.stderr.length));
    });
    const commandId = `local-${child.pid}`;
    this.commands.set(commandId, command);
    return { Command: { CommandId: commandId } };
  }

  invocation(parameters: { CommandId: string; InstanceId: string }): {
    Status: string;
    StatusDetails: string;
    StandardErrorContent: string;
  } {
    const command = this.commands.get(parameters.CommandId);
    if (!command) {
      throw Object.assign(new Error(`no invocation of ${parameters.CommandId} on ${parameters.InstanceId}`), {
        name: "InvocationDoesNotExist",
      });
    }
    const { exitCode, signalCode } = command.child;
    if (exitCode === null && signalCode === null) {
      return { Status: "InProgress", StatusDetails: "InProgress", StandardErrorContent: "" };
    }
    const status = exitCode === 0 ? "Success" : "Failed";
    return { Status: status, StatusDetails: status, StandardErrorContent: command.stderr };
  }
}
