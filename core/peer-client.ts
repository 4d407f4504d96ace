import { type Address, formatAddress, nodeUrl, unbracket } from "./address.ts";
import type { Clock } from "./clock.ts";
import { type ErrorCode, P2prcError, wrapError } from "./errors.ts";
import type { Identity } from "./identity.ts";
import {
  AUTH_HEADERS,
  MAC_V1,
  macRequestHash,
  STREAMED_BODY_SHA256,
  sha256Hex,
  signRequestHash,
} from "./signing.ts";

/** Nodes remembered as taking this client's request MACs; emptied at this many (they sign again first). */
const MAX_MAC_PEERS = 4096;

/**
 * A node to reach: where it listens and what is known of it. Callers pass this, never a URL string:
 * how the bytes get there (TLS pinned to `cert`, a probe, later a relay) is the transport's business.
 */
export interface NodeRef {
  address: Address;
  /** The node's id, when known: signed into every request (`x-p2prc-to`), and the transport checks it. */
  id?: string | undefined;
  /** The certificate from the node's signed record: pinned as is. */
  cert?: string | undefined;
  /** Whether the node serves TLS (its record carries a certificate); unknown: the transport finds out. */
  tls?: boolean | undefined;
}

/**
 * How a request reaches a node. Chosen per node: PeerTransport (p2p/transport.ts) pins TLS to the
 * node's certificate; a relay transport can route a node behind NAT through its relay, callers unaware.
 * Rejects when the node cannot be reached; any answer, error statuses included, resolves.
 */
export interface NodeTransport {
  send(node: NodeRef, path: string, init: RequestInit): Promise<Response>;
  /** Whether the node at `address` serves TLS, once a request there found out; undefined if unknown. */
  servesTls?(address: Address): boolean | undefined;
  /**
   * The id of the node at `address`, proven by the TLS identity probe (made once, then kept: no request
   * of its own); undefined for a node that serves plain HTTP, whose id only its answers say.
   */
  identify?(address: Address): Promise<string | undefined>;
}

/** A transport over a plain `fetch`: `http://` or, when `node.tls`, `https://` with the system's CAs. */
export function fetchTransport(fetchFn: typeof fetch = fetch): NodeTransport {
  return { send: (node, path, init) => fetchFn(`${nodeUrl(node.address, node.tls ?? false)}${path}`, init) };
}

/**
 * A node's URL (`https://[::1]:8088/v1/x?y=1`, as stored for a tracked container or a running server)
 * → the node (its scheme says `tls`) and the path with its query. `known` adds the id and certificate.
 */
export function nodeOfUrl(
  url: string,
  known: Omit<NodeRef, "address" | "tls"> = {},
): { node: NodeRef; path: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new P2prcError("E_INVALID", `not a node URL: "${url.slice(0, 100)}"`, { field: "node" });
  }
  const tls = u.protocol === "https:";
  const port = Number(u.port || (tls ? 443 : 80));
  const node: NodeRef = { address: { host: unbracket(u.hostname), port }, tls };
  if (known.id) node.id = known.id;
  if (known.cert) node.cert = known.cert;
  return { node, path: `${u.pathname}${u.search}` };
}

/**
 * One request to a node. A body is a string or bytes (it is hashed into the signature); a stream sent
 * as it is read (an image push): signed as STREAMED_BODY_SHA256, its digest sent by a later request; or
 * a Blob (a file sent as it is read) whose SHA-256 the caller gives as `bodySha256`.
 */
export interface PeerRequest {
  method?: string;
  body?: Uint8Array | string | ReadableStream<Uint8Array> | Blob | undefined;
  /** The SHA-256 (hex) of a Blob body, signed in its stead (the body is not read to sign it). */
  bodySha256?: string | undefined;
  /** Sent as JSON (`content-type: application/json`). */
  json?: unknown;
  headers?: Record<string, string>;
  /** Default: the client's `timeoutMs`. */
  timeoutMs?: number | undefined;
  /** The caller's cancellation: rejects with its reason, not as an unreachable node. */
  signal?: AbortSignal | undefined;
}

export interface PeerClientOptions {
  /** Signs every request; without one, requests go unsigned (a node answers those for health only). */
  identity?: Identity | undefined;
  /** The signature's timestamp: the same clock the receiving server checks against in tests. */
  clock: Clock;
  transport: NodeTransport;
  /** Per request, unless the request says otherwise. Default 30 s. */
  timeoutMs?: number;
}

/** What a status means when the node's answer names no code. */
function statusCode(status: number): ErrorCode {
  if (status >= 500) return "E_NODE_UNREACHABLE";
  const known: Record<number, ErrorCode> = {
    401: "E_UNAUTHORIZED",
    403: "E_FORBIDDEN",
    404: "E_NOT_FOUND",
    409: "E_CONFLICT",
    413: "E_TOO_LARGE",
    429: "E_RATE_LIMIT",
  };
  return known[status] ?? "E_INVALID";
}

const NOT_A_MEMBER_HINT =
  "ask the node's operator to add this node's id (p2prc --whoami) to its cluster (p2prc --cluster-add <id> on the cluster's host), or to its trusted list (config trusted) if it uses no cluster";

/**
 * The one way p2prc talks to another node (client, gossip, CLI): signs with the identity at the clock's
 * time, binds the request to the node's id when known, applies a timeout, sends through the transport,
 * and maps every failure to a P2prcError — unreachable or no answer in time → E_NODE_UNREACHABLE
 * (retryable); an error answer → the node's own code, message and field (retryable for 5xx and 429).
 *
 * @example
 * const peer = new PeerClient({ identity, clock: systemClock, transport });
 * const res = await peer.request({ address: { host: "10.0.0.7", port: 8088 } }, "/v1/specs");
 */
export class PeerClient {
  readonly timeoutMs: number;

  constructor(private readonly o: PeerClientOptions) {
    this.timeoutMs = o.timeoutMs ?? 30_000;
  }

  /**
   * Nodes (by id) that said they take this client's request MACs (`x-p2prc-auth: mac-v1` on an answer to a
   * signed request): requests to them carry an HMAC under the two nodes' request key instead of a
   * signature (core/request-mac.ts; the node checks it for ~2 µs instead of ~50 µs).
   */
  private readonly macPeers = new Set<string>();

  /** A successful answer (2xx/3xx), its body unread; anything else throws a coded P2prcError. */
  async request(node: NodeRef, path: string, r: PeerRequest = {}): Promise<Response> {
    const method = (r.method ?? "GET").toUpperCase();
    const headers: Record<string, string> = { ...r.headers };
    let body = r.body;
    if (r.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(r.json);
    }
    const streamed = body instanceof ReadableStream;
    let contentSha256: string | undefined;
    if (this.o.identity) {
      if (body instanceof ReadableStream) contentSha256 = STREAMED_BODY_SHA256;
      else if (body instanceof Blob) {
        if (!r.bodySha256) throw new P2prcError("E_INTERNAL", "a Blob body needs its bodySha256");
        contentSha256 = r.bodySha256;
      } else contentSha256 = sha256Hex(body ?? "");
    }
    const attempt = async (mac: boolean) => {
      const sent = { ...headers };
      if (this.o.identity && contentSha256)
        Object.assign(sent, this.auth(node, method, path, contentSha256, mac));
      const timeout = AbortSignal.timeout(r.timeoutMs ?? this.timeoutMs);
      const signal = r.signal ? AbortSignal.any([timeout, r.signal]) : timeout;
      const init: RequestInit = { method, headers: sent, body, signal };
      // a stream body goes as it is read (fetch's `duplex: "half"`)
      if (streamed) Object.assign(init, { duplex: "half" });
      return this.send(node, path, init, r.signal, timeout);
    };
    const id = node.id;
    /** Signed; the node's answer may say it takes MACs from now on. */
    const signed = async () => {
      const res = await attempt(false);
      if (id !== undefined && this.o.identity && res.headers.get(AUTH_HEADERS.accepts) === MAC_V1) {
        if (this.macPeers.size >= MAX_MAC_PEERS) this.macPeers.clear();
        this.macPeers.add(id);
      }
      return res;
    };
    if (!this.o.identity || id === undefined || !this.macPeers.has(id)) return signed();
    try {
      return await attempt(true);
    } catch (err) {
      if (!(err instanceof P2prcError && err.code === "E_UNAUTHORIZED")) throw err;
      // the node no longer takes them (another version behind its address?): signed until it says so
      // again, and this request once more signed where its body can be sent again (refused before it ran)
      this.macPeers.delete(id);
      if (streamed) throw err;
      return signed();
    }
  }

  /** The auth headers of one request: a MAC for a node that takes them, else a signature. */
  private auth(
    node: NodeRef,
    method: string,
    path: string,
    contentSha256: string,
    mac: boolean,
  ): Record<string, string> {
    const identity = this.o.identity as Identity;
    // only the path and query are signed: the host part is a placeholder
    const url = `http://node${path}`;
    const now = this.o.clock.now();
    if (mac && node.id !== undefined) {
      try {
        return macRequestHash(identity, method, url, contentSha256, now, node.id);
      } catch {
        this.macPeers.delete(node.id); // an id with no X25519 form: signed
      }
    }
    return signRequestHash(identity, method, url, contentSha256, now, node.id);
  }

  /**
   * An unsigned POST whose body streams while its answer streams back (an interactive exec's stream,
   * authorised by the one-time token in `headers`). No timeout but the caller's signal.
   */
  async duplex(
    node: NodeRef,
    path: string,
    r: { headers: Record<string, string>; body: ReadableStream<Uint8Array>; signal?: AbortSignal },
  ): Promise<Response> {
    const init = { method: "POST", headers: r.headers, body: r.body, signal: r.signal, duplex: "half" };
    return this.send(node, path, init as RequestInit, r.signal);
  }

  /** Sends through the transport; every failure becomes a coded P2prcError (see the class). */
  private async send(
    node: NodeRef,
    path: string,
    init: RequestInit,
    callerSignal: AbortSignal | undefined,
    timeout?: AbortSignal,
  ): Promise<Response> {
    const where = formatAddress(node.address);
    let res: Response;
    try {
      res = await this.o.transport.send(node, path, init);
    } catch (err) {
      if (callerSignal?.aborted) throw callerSignal.reason;
      if (err instanceof P2prcError) throw wrapError(err, `cannot reach node ${where}`);
      const reason = timeout?.aborted ? "no answer in time" : (err as Error).message;
      throw new P2prcError("E_NODE_UNREACHABLE", `cannot reach node ${where}: ${reason}`, {
        cause: err,
        retryable: true,
      });
    }
    if (res.status >= 400) throw await replyError(res, where);
    return res;
  }

  /** `request`, its JSON answer parsed. */
  async json<T>(node: NodeRef, path: string, r: PeerRequest = {}): Promise<T> {
    return (await (await this.request(node, path, r)).json()) as T;
  }

  /**
   * A `fetch` bound to one node: the URL's path and query are kept, its host ignored. What hono's typed
   * `hc` client calls (`hc<ServerApp>("http://node", { fetch: peer.fetchFor(node) })`).
   */
  fetchFor(node: NodeRef, o: { timeoutMs?: number } = {}): typeof fetch {
    const bound = async (input: string | URL | Request, init: RequestInit = {}) => {
      const req = input instanceof Request ? input : undefined;
      const u = new URL(req ? req.url : String(input));
      const headers: Record<string, string> = {};
      new Headers(req?.headers).forEach((v, k) => {
        headers[k] = v;
      });
      new Headers(init.headers).forEach((v, k) => {
        headers[k] = v;
      });
      const raw =
        init.body ?? (req && !["GET", "HEAD"].includes(req.method) ? await req.arrayBuffer() : undefined);
      return this.request(node, `${u.pathname}${u.search}`, {
        method: init.method ?? req?.method ?? "GET",
        headers,
        body: await bodyBytes(raw),
        timeoutMs: o.timeoutMs,
        signal: init.signal ?? undefined,
      });
    };
    return bound as typeof fetch;
  }
}

/** A fetch body as signable bytes: strings and buffers only (a stream would have to be read to be signed). */
async function bodyBytes(raw: unknown): Promise<Uint8Array | string | undefined> {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw === "string" || raw instanceof Uint8Array) return raw;
  if (raw instanceof ArrayBuffer) return new Uint8Array(raw);
  if (raw instanceof Blob) return new Uint8Array(await raw.arrayBuffer());
  throw new P2prcError("E_INTERNAL", "a signed request's body must be a string or bytes");
}

/** An error answer → the node's own code, message and field; retryable for 5xx and 429. */
async function replyError(res: Response, where: string): Promise<P2prcError> {
  const text = await res.text().catch(() => "");
  let code = statusCode(res.status);
  let message = `node ${where} answered ${res.status}`;
  let field: string | undefined;
  try {
    const parsed = JSON.parse(text) as { error?: { code?: ErrorCode; message?: string; field?: string } };
    if (parsed.error?.code) code = parsed.error.code;
    if (parsed.error?.message) message = `node ${where}: ${parsed.error.message}`;
    field = parsed.error?.field;
  } catch {
    // not JSON: keep the status line
  }
  const hint = res.status === 403 && /not a member/.test(message) ? NOT_A_MEMBER_HINT : undefined;
  return new P2prcError(code, message, { field, hint, retryable: res.status >= 500 || res.status === 429 });
}
