import { P2prcError } from "../../core/index.ts";
import { closureHint } from "./closures.ts";
import type { RemoteErrorInfo } from "./program.ts";

/**
 * What a future's value() throws when its function threw on the node: the remote error's name, message and
 * stack (the node's, followed by where value() was called), and the node that ran it.
 */
export class FutureError extends Error {
  /** The error as the node reported it. */
  readonly remote: RemoteErrorInfo;
  /** The node (its name, or its URL) that ran the function. */
  readonly node: string;

  constructor(remote: RemoteErrorInfo, node: string) {
    const hint = closureHint(remote.name, remote.message);
    super(hint ? `${remote.message} (${hint})` : remote.message);
    this.name = remote.name;
    this.remote = remote;
    this.node = node;
    if (remote.stack) this.stack = `${remote.stack}\n    at <future on ${node}>`;
  }
}

/** What value() throws after cancel(): the future did not (and will not) run to its end. */
export class FutureCancelledError extends P2prcError {
  constructor(id: string) {
    super("E_CONFLICT", `future ${id} was cancelled`);
    this.name = "FutureCancelledError";
  }
}
