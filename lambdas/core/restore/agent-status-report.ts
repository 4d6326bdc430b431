// What each restore agent last reported, read from the status objects the agents write: how
// `etcd-backup status` shows a running restore member by member — phase, state and message, a download's
// progress included — without the execution's history, which holds presigned URLs and which a restore
// operator may not read.
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { parseStatus } from "./restore-plan.js";

/** Where one restore keeps its plans and the agents' statuses: `<prefix>/<cluster>/_restores/<id>/<member>/`. */
export function restoreRunPrefix(prefix: string, cluster: string, restoreId: string): string {
  return `${prefix}/${cluster}/_restores/${restoreId}/`;
}

export interface AgentReport {
  member: string;
  phase: string;
  state: string;
  message: string;
  updatedAt: string;
}

export interface AgentReportsLocation {
  bucket: string;
  prefix: string;
  cluster: string;
  restoreId: string;
}

/** Every member's last report, by member name; a status being rewritten (unparseable) is left out. */
export async function readAgentReports(s3: S3Client, where: AgentReportsLocation): Promise<AgentReport[]> {
  const runPrefix = restoreRunPrefix(where.prefix, where.cluster, where.restoreId);
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: where.bucket, Prefix: runPrefix, ContinuationToken: token }),
    );
    keys.push(...(page.Contents ?? []).flatMap(({ Key }) => (Key?.endsWith("/status.json") ? [Key] : [])));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  const reports = await Promise.all(
    keys.sort().map(async (key): Promise<AgentReport | undefined> => {
      const reply = await s3.send(new GetObjectCommand({ Bucket: where.bucket, Key: key }));
      try {
        const { member, phase, state, message, updatedAt } = parseStatus(
          (await reply.Body?.transformToString("utf8")) ?? "",
        );
        return { member, phase, state, message, updatedAt };
      } catch {
        // Read half-way through a rewrite (s3rver writes in place): the next read has it.
        return undefined;
      }
    }),
  );
  return reports.filter((report) => report !== undefined);
}
