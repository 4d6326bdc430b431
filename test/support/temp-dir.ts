// The local stand-ins live with the local mode (cli/local/), which the demo runs too.
export * from "../../cli/local/temp-dir.js";
