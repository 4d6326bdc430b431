// The static-pod etcd lives with the local mode (cli/local/), which the demo runs too.
export * from "../../cli/local/static-pod-etcd.js";
