import type { Context, MiddlewareHandler } from "hono";
import {
  AUTH_HEADERS,
  type Clock,
  type Logger,
  MAC_V1,
  NonceCache,
  P2prcError,
  parseSignedHeaders,
  STREAMED_BODY_SHA256,
  sha256Hex,
  verifyMacHeaders,
  verifySignedHeaders,
} from "../../core/index.ts";
import type { Caller } from "../caller.ts";
import { readBounded, type SpooledBody, spoolBody } from "./body.ts";

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
  /** Largest body read into memory to check its hash (every route but the upload); 413 above. */
  maxBodyBytes: number;
  /** Largest upload (`PUT /v1/containers/:id/files`), streamed to a file in `spoolDir`; 413 above. */
  maxUploadBytes?: number;
  /** Where uploads are spooled while their hash is checked (the node's data dir). */
  spoolDir?: string;
  /**
   * When this node started (default: when the middleware is made). Requests signed before it are
   * refused: the nonces seen before a restart are gone, so that is what keeps a replay out.
   */
  startedAt?: number;
  /** Requests per minute per node id; 0 = no limit. */
  ratePerMinute?: number;
  /**
   * Uploads of one node other than this one spooled at once (each up to maxUploadBytes of disk);
   * more wait, unread, for a slot. Default 4 (a batch's default slots per node).
   */
  uploadsPerNode?: number;
  /** Uploads of one node that may wait for a slot; 429 beyond. Default 64. */
  uploadQueuePerNode?: number;
  /**
   * How long a non-member's refusal (403) is held before it is sent (default 0: at once). The refusal
   * itself is cheap (a Set lookup, nothing verified or kept), but each request still costs the node its
   * TLS record and HTTP parse; held refusals pace a flood to `connections / refusalDelayMs`, so that it
   * cannot take a member's share of the node. A wait of real time, not the node's Clock: it decides
   * nothing. At most MAX_HELD_REFUSALS wait at once (beyond, refused at once).
   */
  refusalDelayMs?: number;
  /** How a refusal waits (tests count the waits). Default: a timer of real time. */
  holdRefusal?: (ms: number) => Promise<void>;
  /**
   * The key of a node's requests to this one (Identity.requestKey(id, "in")): with it, this node takes
   * request MACs (`x-p2prc-mac`, core/request-mac.ts) and says so on its answers to signed requests
   * (`x-p2prc-auth: mac-v1`); without it, signatures only.
   */
  requestKey?: (nodeId: string) => Buffer;
  /**
   * The replay check's memory (default: a NonceCache of `skewMs`, at most MAX_NONCES, 2,000,000, ~44 MB):
   * a test passes its own to look at it.
   */
  nonces?: NonceCache;
}

/**
 * What the auth middleware puts on the context, for `Hono<{ Variables: AuthVariables }>` and
 * `MiddlewareHandler<{ Variables: AuthVariables }>` (as hono's own `RequestIdVariables`). Both are
 * optional: PUBLIC_ROUTES, and an app without the middleware (tests), set neither.
 */
export type AuthVariables = {
  /** The signer, checked: set on every signed request. */
  caller?: Caller;
  /** The upload body, spooled and checked against its signed hash (the upload route only). */
  upload?: SpooledBody;
};

/** The env of every router and middleware behind `authenticate`. */
export type AuthEnv = { Variables: AuthVariables };

/** Routes that answer without a signature: liveness and the identity probe. */
export const PUBLIC_ROUTES = new Set(["GET /v1/health", "GET /v1/identity"]);

/**
 * An interactive exec's stream (server/routes/exec.ts): its body is stdin as the user types it, so it
 * cannot be signed; it presents the one-time token its signed opening returned instead.
 */
export const isSessionStream = (method: string, path: string) =>
  method === "POST" && /^\/v1\/exec\/[0-9a-f]{32}\/io$/.test(path);

/** The upload routes (container files, batch inputs): their body is spooled to a file, not held in memory. */
export const isUploadRoute = (method: string, path: string) =>
  method === "PUT" && /^\/v1\/(containers\/[^/]+\/files|inputs\/[0-9a-f]{64})$/.test(path);

/**
 * The push route: its body (an image archive) is streamed to the route, which spools it while hashing;
 * its digest is signed by the push's second request, so this one signs STREAMED_BODY_SHA256 instead.
 */
export const isStreamRoute = (method: string, path: string) =>
  method === "POST" && path === "/v1/images/push";

/** Refusals held at once (refusalDelayMs); more are sent at once: a flood cannot pile up timers. */
export const MAX_HELD_REFUSALS = 4096;

/**
 * Says on this node's log that a non-member was refused (defect 9: neither side said so): once per
 * claimed id per 10 minutes, and for at most 64 ids per 10 minutes, so a flood of forged ids (the claim
 * is not verified before the refusal) cannot fill the log.
 */
class RefusedLog {
  private readonly seen = new Map<string, number>();
  private windowStart = 0;
  constructor(private readonly logger: Logger) {}

  note(nodeId: string, now: number): void {
    if (now - this.windowStart >= 600_000) {
      this.seen.clear();
      this.windowStart = now;
    }
    if (this.seen.has(nodeId) || this.seen.size >= 64) return;
    this.seen.set(nodeId, now);
    this.logger.warn(
      `refused node ${nodeId}: not a member here (to let it in: p2prc --cluster-add ${nodeId} on the cluster's host, or add it to trusted)`,
    );
  }
}

/**
 * Every request but PUBLIC_ROUTES must be signed by a node key (core/signing.ts). The checks
 * run cheapest first, and no body is read before the signer is known to be a member and its signature
 * holds: 401 when headers are missing or malformed, the timestamp is outside ±skew or from before this
 * node started; 403 when the claimed signer is not a member (nothing is verified or kept for it);
 * 401 for a bad signature or a seen nonce (replay); 429 when the replay memory is full or over the rate
 * limit; only a member's request with a good signature leaves state (its nonce). Then the body is read
 * (413 over the limit) and 401 when it does not match its signed hash. The caller is then
 * `c.get("caller")`; an upload's spooled body is `c.get("upload")` (both typed by AuthVariables).
 */
export function authenticate(o: AuthOptions): MiddlewareHandler<AuthEnv> {
  const nonces = o.nonces ?? new NonceCache(o.skewMs);
  const buckets = new Map<string, { start: number; count: number }>();
  const uploadSlots = new UploadSlots(o.uploadsPerNode ?? 4, o.uploadQueuePerNode ?? 64);
  const startedAt = o.startedAt ?? o.clock.now();
  const refusedLog = new RefusedLog(o.logger);
  const refusalDelayMs = o.refusalDelayMs ?? 0;
  const holdRefusal = o.holdRefusal ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let held = 0;
  const unauthenticated = (reason: string, retryable = false) =>
    new P2prcError("E_UNAUTHORIZED", `unauthenticated: ${reason}`, { retryable });
  return async (c, next) => {
    const method = c.req.method;
    if (PUBLIC_ROUTES.has(`${method} ${c.req.path}`) || isSessionStream(method, c.req.path)) return next();
    const now = o.clock.now();
    const parsed = parseSignedHeaders({ headers: (n) => c.req.header(n), now, skewMs: o.skewMs });
    if (!parsed.ok) throw unauthenticated(parsed.reason);
    const h = parsed.value;
    if (Number(h.timestamp) < startedAt) {
      throw unauthenticated(
        "the request was signed before this node (re)started; sign it again with a fresh timestamp",
        true,
      );
    }
    // Membership of the claimed id first: a non-member costs a Set lookup, no Ed25519 verify, no body
    // read, no nonce or rate-limit entry. A forged header learns only what that id's own key would get.
    if (!o.isMember(h.nodeId)) {
      refusedLog.note(h.nodeId, now);
      if (refusalDelayMs > 0 && held < MAX_HELD_REFUSALS) {
        held++;
        try {
          await holdRefusal(refusalDelayMs);
        } finally {
          held--;
        }
      }
      throw new P2prcError(
        "E_FORBIDDEN",
        `node ${h.nodeId.slice(0, 12)}… is not a member of this node's cluster`,
      );
    }
    let r: ReturnType<typeof verifySignedHeaders>;
    // a signed request from a node that could send MACs is told it may (on the answer, below)
    let advertise = false;
    if (h.mac !== undefined) {
      if (!o.requestKey)
        throw unauthenticated(`this node takes signed requests only (${AUTH_HEADERS.signature})`);
      let key: Buffer;
      try {
        key = o.requestKey(h.nodeId);
      } catch {
        throw unauthenticated("no request key with this node id; sign the request");
      }
      r = verifyMacHeaders(h, { method, url: c.req.url, key, selfId: o.selfId });
    } else {
      r = verifySignedHeaders(h, { method, url: c.req.url, selfId: o.selfId });
      advertise = r.ok && o.requestKey !== undefined && h.to !== undefined;
    }
    if (!r.ok) throw unauthenticated(r.reason);
    // Only now, for a member whose signature holds, is anything kept for the request (its nonce).
    const seen = nonces.check(r.nodeId, r.nonce, now);
    if (seen === "replay") throw unauthenticated("this request was already used (replay)");
    if (seen === "full") {
      throw new P2prcError(
        "E_RATE_LIMIT",
        `too many signed requests within ${(2 * o.skewMs) / 1000} s (${nonces.maxEntries} remembered against replay); retry later`,
        { retryable: true },
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
    let spooled: SpooledBody | undefined;
    let release = () => {};
    if (isStreamRoute(method, c.req.path)) {
      if (h.contentSha256 !== STREAMED_BODY_SHA256)
        throw unauthenticated(`a streamed body is signed as ${STREAMED_BODY_SHA256} (its digest follows)`);
      // bounds the disk one member fills at once, as for uploads
      if (r.nodeId !== o.selfId) release = await uploadSlots.acquire(r.nodeId);
    } else if (method !== "GET" && method !== "HEAD") {
      if (isUploadRoute(method, c.req.path) && o.spoolDir) {
        // Bounds the disk one member can fill with uploads at once (its own key is not bound).
        if (r.nodeId !== o.selfId) release = await uploadSlots.acquire(r.nodeId);
        try {
          spooled = await spoolBody(c.req.raw, o.spoolDir, o.maxUploadBytes ?? o.maxBodyBytes);
        } catch (err) {
          release();
          throw err;
        }
        if (spooled.sha256 !== h.contentSha256) {
          release();
          await spooled.remove();
          throw unauthenticated("body does not match its signed hash");
        }
        c.set("upload", spooled);
      } else {
        const body = await readBounded(c.req.raw, o.maxBodyBytes);
        if (sha256Hex(body) !== h.contentSha256) throw unauthenticated("body does not match its signed hash");
        // The body stream is spent: routes (and hono's bodyLimit) read this copy, chunked or not.
        const headers = new Headers(c.req.raw.headers);
        headers.delete("transfer-encoding");
        headers.set("content-length", String(body.length));
        c.req.raw = new Request(c.req.raw.url, { method, headers, body, signal: c.req.raw.signal });
      }
    }
    c.set("caller", { id: r.nodeId, admin: o.isAdmin(r.nodeId), operator: r.nodeId === o.selfId });
    try {
      await next();
      if (advertise) {
        try {
          c.res.headers.set(AUTH_HEADERS.accepts, MAC_V1);
        } catch {
          // an answer with immutable headers (a proxied one): the caller keeps signing, which works
        }
      }
    } finally {
      await spooled?.remove();
      release();
    }
  };
}

/** The caller the auth middleware established. */
export function signedCaller(c: Context<AuthEnv>): Caller | undefined {
  return c.get("caller");
}

/** Per-node upload slots: `size` at once, then up to `queue` waiting in order, then 429. */
class UploadSlots {
  private readonly nodes = new Map<string, { active: number; waiting: (() => void)[] }>();
  constructor(
    private readonly size: number,
    private readonly queue: number,
  ) {}

  /** Resolves with the function that frees the slot once one is free. */
  async acquire(nodeId: string): Promise<() => void> {
    const entry = this.nodes.get(nodeId) ?? { active: 0, waiting: [] };
    this.nodes.set(nodeId, entry);
    if (entry.active < this.size) entry.active++;
    else if (entry.waiting.length >= this.queue) {
      throw new P2prcError("E_RATE_LIMIT", `at most ${this.size + this.queue} uploads at once per node`, {
        retryable: true,
      });
    } else await new Promise<void>((resolve) => entry.waiting.push(resolve));
    let freed = false;
    return () => {
      if (freed) return;
      freed = true;
      const next = entry.waiting.shift();
      if (next)
        next(); // the slot passes on
      else if (--entry.active === 0) this.nodes.delete(nodeId);
    };
  }
}
