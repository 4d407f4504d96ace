import type { Context, MiddlewareHandler } from "hono";
import { type Clock, type Logger, NonceCache, P2prcError, verifyRequest } from "../../config/index.ts";
import type { Caller } from "../caller.ts";

/** Who may use this node. */
export interface AuthOptions {
  selfId: string;
  /** A node allowed to use this one (this node, `trusted`, a cluster member, or anyone on an open network). */
  isMember: (nodeId: string) => boolean;
  /** Manages every container: this node's own key (the operator's CLI) and cluster admins. */
  isAdmin: (nodeId: string) => boolean;
  skewMs: number;
  clock: Clock;
  logger: Logger;
  /** Largest body read to check its hash (bigger requests are refused before reading). */
  maxBodyBytes: number;
  /** Requests per minute per node id; 0 = no limit. */
  ratePerMinute?: number;
}

/** Routes that answer without a signature: liveness and the identity probe. */
export const PUBLIC_ROUTES = new Set(["GET /v1/health", "GET /v1/identity"]);

/**
 * Every request but PUBLIC_ROUTES must be signed by a node key (config/request-auth.ts): 401 when the
 * signature is missing or bad, the timestamp is outside ±skew or the nonce was seen (replay); 403 when
 * the signer is not a member; 429 over the rate limit. The caller is then `c.get("caller")`.
 */
export function authenticate(o: AuthOptions): MiddlewareHandler {
  const nonces = new NonceCache(o.skewMs);
  const buckets = new Map<string, { start: number; count: number }>();
  const log = o.logger.withTag("auth");
  return async (c, next) => {
    if (PUBLIC_ROUTES.has(`${c.req.method} ${c.req.path}`)) return next();
    const length = Number(c.req.header("content-length") ?? "0");
    if (length > o.maxBodyBytes) {
      throw new P2prcError("E_INVALID", `body: larger than ${o.maxBodyBytes} bytes`, { field: "body" });
    }
    const body = ["GET", "HEAD"].includes(c.req.method) ? "" : new Uint8Array(await c.req.arrayBuffer());
    const now = o.clock.now();
    const r = verifyRequest({
      method: c.req.method,
      url: c.req.url,
      headers: (n) => c.req.header(n),
      body,
      now,
      skewMs: o.skewMs,
      selfId: o.selfId,
    });
    if (!r.ok) throw new P2prcError("E_UNAUTHORIZED", `unauthenticated: ${r.reason}`);
    if (!nonces.use(r.nodeId, r.nonce, now)) {
      throw new P2prcError("E_UNAUTHORIZED", "unauthenticated: this request was already used (replay)");
    }
    if (!o.isMember(r.nodeId)) {
      log.debug(`refused ${c.req.method} ${c.req.path} from non-member ${r.nodeId.slice(0, 12)}`);
      throw new P2prcError(
        "E_FORBIDDEN",
        `node ${r.nodeId.slice(0, 12)}… is not a member of this node's cluster`,
      );
    }
    if (o.ratePerMinute && r.nodeId !== o.selfId) {
      const b = buckets.get(r.nodeId);
      if (!b || now - b.start >= 60_000) buckets.set(r.nodeId, { start: now, count: 1 });
      else if (++b.count > o.ratePerMinute) {
        throw new P2prcError(
          "E_RATE_LIMIT",
          `rate limit: at most ${o.ratePerMinute} requests a minute per node`,
          {
            retryable: true,
          },
        );
      }
    }
    c.set(
      "caller" as never,
      { id: r.nodeId, admin: o.isAdmin(r.nodeId), operator: r.nodeId === o.selfId } satisfies Caller as never,
    );
    return next();
  };
}

/** The caller the auth middleware established. */
export function signedCaller(c: Context): Caller | undefined {
  return c.get("caller" as never) as Caller | undefined;
}
