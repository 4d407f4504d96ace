// Helpers the multi-process tests share.
import { join } from "node:path";
import { type Identity, loadOrCreateIdentity, signRequest } from "../config/index.ts";
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

/**
 * `fetch` signed by a node key (config/request-auth.ts): signs method, url and the exact body sent
 * ("" when none) and merges the auth headers into `init.headers`. The body must be a string or bytes.
 */
export async function signedFetch(
  identity: Identity,
  url: string,
  init: RequestInit = {},
): Promise<Response> {
  const method = (init.method ?? "GET").toUpperCase();
  const body = init.body ?? "";
  if (typeof body !== "string" && !(body instanceof Uint8Array))
    throw new Error("signedFetch: the body must be a string or a Uint8Array");
  const headers = new Headers(init.headers);
  for (const [k, v] of Object.entries(signRequest(identity, method, url, body))) headers.set(k, v);
  return fetch(url, { ...init, method, headers });
}

/** The node key of a node home (its admin key). */
export function nodeIdentity(home: string): Identity {
  return loadOrCreateIdentity(join(home, "identity/node.key"), join(home, "identity/node.pub"));
}
