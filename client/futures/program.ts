// What a future runs on the node and how its answer is read back. The program is the caller's function as
// source inside a small wrapper: it reads the arguments (a structured clone, bun:jsc's serialize, so Date,
// Map, Set, BigInt, typed arrays and nested objects round-trip), captures console output, calls the function,
// and prints one line `@@p2prc-future:<nonce>:<base64>` with the value or the error. The nonce is the
// attempt's own: with the node's signature over the reply it proves the answer is this request's, from that node.
import { deserialize, serialize } from "bun:jsc";
import { P2prcError, taskReplyText, verifySignature } from "../../core/index.ts";

/** The marker of the result line. */
const MARKER = "@@p2prc-future:";

/** An error as it crosses the wire: what value() throws again here. */
export interface RemoteErrorInfo {
  name: string;
  message: string;
  stack?: string | undefined;
}

/** One captured console call: its level and its text (formatted on the node with Bun.inspect). */
export interface LogLine {
  level: "log" | "info" | "warn" | "error" | "debug";
  text: string;
}

/** What the program sends back. */
export type RemoteOutcome =
  | { ok: true; value: unknown; logs: LogLine[] }
  | { ok: false; error: RemoteErrorInfo; logs: LogLine[] };

/**
 * The program a node runs for a future: `prelude` (bundled imports, when there are any) binds names the
 * function may use; `fnSource` is the function's source text.
 */
export function futureProgram(fnSource: string, prelude = ""): string {
  return `${prelude}
import { serialize as __s, deserialize as __d } from "bun:jsc";
import { readFileSync as __r } from "node:fs";
const __logs = [];
for (const level of ["log", "info", "warn", "error", "debug"])
  console[level] = (...a) => { __logs.push({ level, text: a.map((x) => typeof x === "string" ? x : Bun.inspect(x)).join(" ") }); };
const __raw = process.env.P2PRC_FUTURE_ARGS ?? __r("args.bin", "utf8");
const __args = __d(Buffer.from(__raw, "base64"));
let __out;
try {
  const __fn = (${fnSource}
);
  if (typeof __fn !== "function") throw new TypeError("a future's fn must be a function");
  __out = { ok: true, value: await __fn(...__args) };
} catch (e) {
  const err = e instanceof Error ? e : new Error(String(e));
  __out = { ok: false, error: { name: err.name, message: err.message, stack: err.stack } };
}
__out.logs = __logs;
let __bytes;
try { __bytes = __s(__out); }
catch (e) { __bytes = __s({ ok: false, error: { name: "DataCloneError", message: "the value cannot be sent back: " + e.message }, logs: __logs }); }
process.stdout.write("\\n${MARKER}" + process.env.P2PRC_FUTURE_NONCE + ":" + Buffer.from(__bytes).toString("base64") + "\\n");
`;
}

/** The arguments as the program reads them (base64 of a structured clone). */
export function encodeArgs(args: unknown[]): string {
  try {
    return Buffer.from(serialize(args)).toString("base64");
  } catch (err) {
    throw new P2prcError("E_INVALID", `future: the arguments cannot be sent: ${(err as Error).message}`, {
      field: "args",
      hint: "arguments are sent as a structured clone: plain data, Date, Map, Set, BigInt, typed arrays; no functions or class instances",
    });
  }
}

/** A task's reply as the node sent it. */
export interface SignedReply {
  containerId: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut?: boolean | undefined;
  signature?: string | undefined;
}

/** Refuses a reply that is not signed by `nodeId` (undefined: the node is not known by id, nothing to check). */
export function verifyReply(r: SignedReply, nodeId: string | undefined): void {
  if (!nodeId) return;
  if (!r.signature || !verifySignature(nodeId, taskReplyText(r), r.signature))
    throw new P2prcError("E_FORBIDDEN", `the reply is not signed by node ${nodeId.slice(0, 12)} (refused)`, {
      field: "signature",
    });
}

/**
 * Reads a future's outcome out of a node's reply: the signature must be the node's (`nodeId`) over this
 * reply, and the result line must carry this attempt's nonce. Whatever the function printed to stdout
 * itself (not through console) comes back as `stdout`.
 */
export function readReply(
  r: SignedReply,
  nodeId: string | undefined,
  nonce: string,
): RemoteOutcome & { stdout: string } {
  verifyReply(r, nodeId);
  const at = r.stdout.lastIndexOf(`\n${MARKER}${nonce}:`);
  if (at < 0) {
    const tail = (r.stderr || r.stdout).trim().slice(-2000);
    throw new P2prcError(
      "E_ENGINE",
      `future: the runtime exited with code ${r.exitCode} without a result${tail ? `: ${tail}` : ""}`,
    );
  }
  const line = r.stdout.slice(at + 1 + MARKER.length + nonce.length + 1).split("\n")[0] ?? "";
  const outcome = deserialize(Buffer.from(line, "base64")) as RemoteOutcome;
  return { ...outcome, stdout: r.stdout.slice(0, at) };
}
