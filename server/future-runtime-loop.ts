// The long-lived runtime a node keeps in a warm futures container (Docs/Futures.md "The long-lived
// runtime"): one Bun process, started once through an interactive exec (`p2prc -e <this source>`), that
// runs one future's program after another without an exec each. The node writes requests on its stdin,
// each a 4-byte big-endian length and that many bytes of JSON `{ id, program, env }`; the runtime sets
// `env` in process.env, writes the program to a file and imports it (an ES module: its static imports and
// top-level await work as under `p2prc -e`), capturing what it writes to process.stdout and stderr, and
// answers on its stdout with one line `@@p2prc-runtime:<id>:<base64 of JSON {exitCode, stdout, stderr}>`.
// Its first line is `@@p2prc-runtime:ready:<pid>` (the node kills that pid when a future times out).
// Anything else on its stdout (a write that bypassed process.stdout) is passed on as the future's stdout.

/** The marker that starts each of the runtime's protocol lines. */
export const RUNTIME_MARKER = "@@p2prc-runtime:";

/** The runtime's source, run with `p2prc -e`. */
export const RUNTIME_LOOP = `
import { mkdirSync as __mk, rmSync as __rm, writeFileSync as __wf } from "node:fs";
const M = ${JSON.stringify(RUNTIME_MARKER)};
const out = process.stdout.write.bind(process.stdout);
const err = process.stderr.write.bind(process.stderr);
const dir = "/tmp/p2prc-runtime-" + process.pid;
__mk(dir, { recursive: true });
// what a future left running (a timer, a promise) and that fails later must not end the runtime
process.on("uncaughtException", () => {});
process.on("unhandledRejection", () => {});
const queue = [];
let buf = Buffer.alloc(0);
let wake = () => {};
process.stdin.on("data", (c) => {
  buf = Buffer.concat([buf, c]);
  while (buf.length >= 4) {
    const len = buf.readUInt32BE(0);
    if (buf.length < 4 + len) break;
    queue.push(JSON.parse(buf.subarray(4, 4 + len).toString("utf8")));
    buf = buf.subarray(4 + len);
  }
  wake();
});
process.stdin.on("end", () => { __rm(dir, { recursive: true, force: true }); process.exit(0); });
const capture = (append) => (chunk, ...rest) => {
  append(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
  const cb = rest.find((x) => typeof x === "function");
  if (cb) cb();
  return true;
};
out("\\n" + M + "ready:" + process.pid + "\\n");
let n = 0;
for (;;) {
  while (queue.length === 0) await new Promise((r) => { wake = r; });
  const req = queue.shift();
  let so = "", se = "", code = 0;
  const saved = {};
  for (const [k, v] of Object.entries(req.env ?? {})) { saved[k] = process.env[k]; process.env[k] = v; }
  process.stdout.write = capture((s) => { so += s; });
  process.stderr.write = capture((s) => { se += s; });
  const file = dir + "/f" + ++n + ".mjs";
  try {
    __wf(file, req.program);
    await import(file);
  } catch (e) {
    code = 1;
    se += (e && e.stack ? e.stack : String(e)) + "\\n";
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v; }
    __rm(file, { force: true });
  }
  out("\\n" + M + req.id + ":" + Buffer.from(JSON.stringify({ exitCode: code, stdout: so, stderr: se })).toString("base64") + "\\n");
}
`;
