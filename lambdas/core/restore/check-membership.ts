// A restore stops and restores exactly the members the targets file lists: a member it does not know of
// would keep serving (and its API server with it) while the others are restored under it, and a name or
// peer URL that differs from the running member's would only show as a failed health check, after every
// member was stopped. So the configured members are compared with etcd's own member list first.
import { InvalidInputError } from "../errors.js";

export interface ConfiguredMember {
  name: string;
  peerUrl: string;
}

export interface LiveMember {
  name: string;
  peerURLs: string[];
  isLearner?: boolean;
}

/** Throws, naming every difference, unless the configured members are exactly etcd's voting members. */
export function checkMembership(cluster: string, configured: ConfiguredMember[], live: LiveMember[]): void {
  const problems: string[] = [];
  const liveByName = new Map(live.map((member) => [member.name, member]));
  for (const member of configured) {
    const running = liveByName.get(member.name);
    if (!running) problems.push(`${member.name} is not a member of the running etcd`);
    else if (!running.peerURLs.map(withoutTrailingSlash).includes(withoutTrailingSlash(member.peerUrl)))
      problems.push(
        `${member.name}'s peerUrl is ${member.peerUrl}, but etcd has ${running.peerURLs.join(", ") || "none"}`,
      );
  }
  const configuredNames = new Set(configured.map((member) => member.name));
  for (const member of live) {
    if (configuredNames.has(member.name)) continue;
    const what = member.isLearner ? "learner" : "member";
    problems.push(
      member.name
        ? `etcd has a ${what} ${member.name} (${member.peerURLs.join(", ")}) that restore.members does not list`
        : `etcd has an unstarted ${what} (${member.peerURLs.join(", ")}) that restore.members does not list`,
    );
  }
  if (problems.length > 0) {
    throw new InvalidInputError(
      `restore.members of ${cluster} does not match the running etcd: ${problems.join("; ")}. Every member is stopped and restored: correct the targets file (or remove the extra member from etcd) first`,
    );
  }
}

function withoutTrailingSlash(url: string): string {
  return url.replace(/\/+$/, "");
}
