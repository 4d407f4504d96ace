// What a client and a node agree on for futures (Docs/Futures.md): the name a create gives to get the
// node's runtime image, where that image holds p2prc's own executable, and what a node signs about a task
// it ran, so the caller can check that the node it chose computed the reply.
import { sha256Hex } from "./signing.ts";

/** The image a create names to get this node's runtime image (`p2prc-runtime:<hash>`, built once). */
export const RUNTIME_IMAGE = "p2prc-runtime";
/** Where the runtime image holds the executable (Bun, or p2prc with Bun embedded: BUN_BE_BUN=1 is set). */
export const RUNTIME_BIN = "/p2prc/p2prc";
/** Keeps a warm runtime container running: the runtime itself, asleep (the image has no `tail`). */
export const RUNTIME_KEEP_ALIVE = [RUNTIME_BIN, "-e", "setInterval(() => {}, 2 ** 30)"];

/** A task's reply as the node signs it. */
export interface SignedTaskFields {
  containerId: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut?: boolean | undefined;
  /** The task's outputs carried in the reply (batch tasks that named some): each one's state and tar hash. */
  outputs?: { path: string; state: string; sha256?: string }[] | undefined;
}

/**
 * The text a node signs about a task it ran: the container, the exit, the SHA-256 of stdout and stderr,
 * and of each output file's tar carried in the reply.
 * A caller that put a nonce of its own in the task's output knows the reply is the answer to its request.
 */
export function taskReplyText(r: SignedTaskFields): string {
  return [
    "p2prc-task-v1",
    r.containerId,
    String(r.exitCode),
    r.timedOut ? "timed-out" : "exited",
    sha256Hex(r.stdout),
    sha256Hex(r.stderr),
    // one line per output, only when the reply has outputs: a reply without them signs the same text as before
    ...(r.outputs ?? []).map((o) => `output ${o.state} ${o.sha256 ?? "-"} ${JSON.stringify(o.path)}`),
  ].join("\n");
}
