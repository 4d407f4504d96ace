// Helpers the multi-process tests share.
import { join } from "node:path";
import { type Identity, loadOrCreateIdentity } from "../config/index.ts";
import { freePorts } from "../server/index.ts";

/** A free TCP port on 127.0.0.1 (released again, so a node can bind it). */
export async function freePort(): Promise<number> {
  return (await freePorts(1, "127.0.0.1"))[0] as number;
}

/** Polls `fn` until it returns a value (errors count as "not yet"); fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs: number,
  stepMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs} ms${lastErr ? `: ${lastErr}` : ""}`);
    await Bun.sleep(stepMs);
  }
}

/** `fetch` signed by a node key: the library's own helper (config/request-auth.ts). */
export { signedFetch } from "../config/index.ts";

/** The node key of a node home (its admin key). */
export function nodeIdentity(home: string): Identity {
  return loadOrCreateIdentity(join(home, "identity/node.key"), join(home, "identity/node.pub"));
}
