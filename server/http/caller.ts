import type { Context } from "hono";
import { P2prcError } from "../../core/index.ts";
import type { Caller } from "../caller.ts";
import type { AuthEnv } from "./auth.ts";

/** Decides who a request comes from; injectable so tests can replace the signature check. */
export type CallerResolver = (c: Context<AuthEnv>) => Caller | undefined;

/** The remote address Bun saw, when the app runs under Bun.serve. */
export function remoteAddress(c: Context): string | undefined {
  const server = (c.env as { server?: { requestIP(r: Request): { address: string } | null } } | undefined)
    ?.server;
  return server?.requestIP(c.req.raw)?.address;
}

/** The caller, or 401 when the request did not establish one. */
export function requireCaller(c: Context<AuthEnv>, resolve: CallerResolver): Caller {
  const caller = resolve(c);
  if (!caller) throw new P2prcError("E_UNAUTHORIZED", "this route needs a request signed by a member node");
  return caller;
}
