import type { Context } from "hono";
import { P2prcError } from "../../config/index.ts";
import type { Caller } from "../caller.ts";

/** Decides who a request comes from; injectable so the trust layer (and tests) can replace it. */
export type CallerResolver = (c: Context) => Caller | undefined;

/** The remote address Bun saw, when the app runs under Bun.serve. */
export function remoteAddress(c: Context): string | undefined {
  const server = (c.env as { server?: { requestIP(r: Request): { address: string } | null } } | undefined)
    ?.server;
  return server?.requestIP(c.req.raw)?.address;
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.");
}

/**
 * Until cluster trust exists: loopback callers are the node's operator (admin); others may change
 * things only when `allowRemoteMutations` is set, each as its own owner `remote:<ip>`.
 */
export function addressCallerResolver(allowRemote: boolean): CallerResolver {
  return (c) => {
    const address = remoteAddress(c);
    if (isLoopback(address)) return { id: "local", admin: true };
    if (allowRemote && address) return { id: `remote:${address}`, admin: false };
    return undefined;
  };
}

/** The caller, or 403 explaining who may use container routes. */
export function requireCaller(c: Context, resolve: CallerResolver): Caller {
  const caller = resolve(c);
  if (!caller) {
    throw new P2prcError(
      "E_FORBIDDEN",
      "this node accepts container requests only from loopback (set allowRemoteMutations to allow others)",
    );
  }
  return caller;
}
