// `npm run docs:diagrams`: redraws the workflow pictures in README.md from statemachine/*.asl.json.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { diagramSection } from "./asl-diagram.js";

const readme = join(import.meta.dirname, "../../README.md");
let text = await readFile(readme, "utf8");
for (const name of ["backup", "restore"]) {
  const pattern = new RegExp(`<!-- diagram:${name} -->[\\s\\S]*?<!-- /diagram:${name} -->`);
  text = text.replace(pattern, await diagramSection(name));
}
await writeFile(readme, text);
