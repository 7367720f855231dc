// Compile a Solidity standard-JSON input (stdin) with the `solc` npm package (soljson, no native
// binary) and print the standard-JSON output (stdout).  Run by build.py with NODE_PATH pointing at
// the cache prefix where build.py installed the pinned solc version.
"use strict";
const solc = require("solc");

const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const input = Buffer.concat(chunks).toString("utf8");
  process.stdout.write(JSON.stringify({ version: solc.version(), output: JSON.parse(solc.compile(input)) }));
});
