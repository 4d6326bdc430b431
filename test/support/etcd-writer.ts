// The writer lives with the local mode (cli/local/), which the demo uses too.
export * from "../../cli/local/etcd-writer.js";
