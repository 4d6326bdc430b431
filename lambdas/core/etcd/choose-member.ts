// Picks the member to snapshot among the given endpoints: one that answers, has no alarms and is not a
// learner, preferring a follower so that the leader keeps its full attention for the cluster.
import { EtcdAccessDeniedError, EtcdBackupError, EtcdUnavailableError } from "../errors.js";
import { createEtcdClient, type EtcdClient, type EtcdTlsMaterial, type MemberStatus } from "./etcd-client.js";

export interface ChosenMember {
  client: EtcdClient;
  status: MemberStatus;
}

export async function chooseSnapshotMember(
  endpoints: string[],
  options: { tls?: EtcdTlsMaterial; callTimeoutMs?: number } = {},
): Promise<ChosenMember> {
  const clients = endpoints.map((endpoint) => createEtcdClient({ endpoint, ...options }));
  const answers = await Promise.allSettled(clients.map((client) => client.status()));
  const candidates: ChosenMember[] = [];
  const problems: string[] = [];
  let unreachable = false;
  let refusedEverywhere = answers.length > 0;
  answers.forEach((answer, index) => {
    const client = clients[index] as EtcdClient;
    if (answer.status !== "rejected" || !(answer.reason instanceof EtcdAccessDeniedError)) {
      refusedEverywhere = false;
    }
    if (answer.status === "rejected") {
      unreachable = true;
      problems.push(describeProblem(answer.reason));
    } else if (answer.value.errors.length > 0)
      problems.push(`${client.endpoint}: ${answer.value.errors.join(", ")}`);
    else if (answer.value.isLearner) problems.push(`${client.endpoint}: is a learner`);
    else candidates.push({ client, status: answer.value });
  });
  candidates.sort((a, b) => Number(isLeader(a.status)) - Number(isLeader(b.status)));
  const chosen = candidates[0];
  for (const client of clients) if (client !== chosen?.client) client.close();
  if (!chosen && refusedEverywhere) {
    throw new EtcdAccessDeniedError(
      `no etcd member accepted the TLS identity given (${problems.join("; ")}): check the CA, client certificate and key (the target's tlsSecretArn, or --cacert/--cert/--key)`,
    );
  }
  if (!chosen) {
    const check = unreachable
      ? "check the endpoints, the TLS settings (CA, client certificate and key) and that the network reaches etcd's client port"
      : "clear the alarms (etcdctl alarm list) or give the endpoint of a healthy voting member";
    throw new EtcdUnavailableError(`no etcd member can be snapshotted (${problems.join("; ")}): ${check}`);
  }
  return chosen;
}

/** One member's failure without the error name the caller's error already carries. */
function describeProblem(reason: unknown): string {
  const message =
    reason instanceof EtcdBackupError
      ? reason.message
      : reason instanceof Error
        ? `${reason.name}: ${reason.message}`
        : String(reason);
  return message.replace("Last error: Error: ", "last error: ").trim();
}

function isLeader(status: MemberStatus): boolean {
  return status.memberId === status.leaderId;
}
