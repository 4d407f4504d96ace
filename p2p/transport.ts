import {
  certSha256,
  formatAddress,
  type NodeRef,
  type NodeTransport,
  nodeOfUrl,
  P2prcError,
  pinnedTls,
  probeCertificate,
} from "../core/index.ts";
import { verifyRecord } from "./table.ts";
import type { SignedRecord } from "./types.ts";

/** `p`, or a rejection as soon as `signal` aborts (the probe has its own timeout besides). */
function abortable<T>(p: Promise<T>, signal: AbortSignal | null | undefined): Promise<T> {
  if (!signal) return p;
  p.catch(() => {}); // settled later, after an abort: not an unhandled rejection
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Peers with a pinned keep-alive session at once; the least recently used is closed beyond it. */
const MAX_SESSIONS = 256;

/**
 * How long an idle pinned connection stays open (Bun's socket timer rounds it up, by up to 8 s): long
 * enough that a quiet node of ~150 peers comes round to each again before it closes (see
 * pace.keepSession), shorter than the server's idle timeout (180 s, server/node.ts), so a request is
 * never sent on a connection the peer is closing.
 */
export const SESSION_IDLE_MS = 160_000;

/**
 * How many peers a node contacts in turn (gossip's try order, p2p/gossip-core.ts TryOrder). Bun (1.4.5)
 * keeps at most 64 idle TLS connections per process, every session's together, and closes the longest-idle
 * one when one more is released (bun-types FetchSessionInit.keepAlive; oven-sh/bun#42608). A node that
 * tried all its peers in turn therefore reconnected, with a TLS handshake at both ends, on every exchange
 * once it had more than 64 peers: measured, 100 TLS servers fetched in turn through 100 pinned sessions
 * opened 100 new connections every pass, 50 of them opened none after the first; and at N = 100 the
 * machine opened ~100 connections a second, one per exchange, at N = 50 none. 48 leaves room for seeds,
 * probes and the CLI's requests.
 */
export const POOLED_PEERS = 48;

/** What is known of a peer before talking to it. */
export interface PeerExpectation {
  /** The node id the caller means to reach: an address that answers as another node is refused. */
  nodeId?: string | undefined;
  /** The certificate from the peer's signed record: pinned as is. */
  cert?: string | undefined;
}

export interface PeerTransportOptions {
  /** This node serves TLS, so it refuses to talk plain HTTP to a peer (no silent downgrade). */
  requireTls: boolean;
  /** The certificate the IP table holds for the node at host:port (from its signed record), if any. */
  certAt?: (host: string, port: number, nodeId?: string) => { nodeId: string; cert: string } | undefined;
  /** How long the certificate probe of a new address may take. */
  probeTimeoutMs?: number;
  fetch?: typeof fetch;
}

type Known = { tls: true; cert: string; nodeId: string } | { tls: false };

/**
 * How p2prc reaches another node (the NodeTransport under core's PeerClient). The node's address is used
 * whatever it says of TLS: when the
 * node's signed record carries a certificate, the request goes over TLS with exactly that certificate
 * pinned. An address with no record yet (a bootstrap seed, a host:port typed by a user) is probed once:
 * the certificate it serves is pinned for a request to its identity probe, whose signed record must name
 * that same certificate — so the TLS session is bound to the node's key (trust on first use, like ssh,
 * for whom the address belongs to; the key then proves it). A node that serves plain HTTP is used only
 * when this node does not require TLS itself.
 */
export class PeerTransport implements NodeTransport {
  private readonly known = new Map<string, Known>();
  /** One keep-alive session per pinned certificate: a handshake per peer, not per request. */
  private readonly sessions = new Map<string, Bun.FetchSession>();
  private readonly fetchFn: typeof fetch;

  constructor(private readonly o: PeerTransportOptions) {
    this.fetchFn = o.fetch ?? fetch;
  }

  /**
   * A fetch bound to one peer, for a URL (the scheme given is ignored). Callers pass a node to
   * `send` through core's PeerClient; this is kept for tests and tools holding a URL.
   */
  fetchFor(expect: PeerExpectation = {}): typeof fetch {
    const bound = async (input: string | URL | Request, init?: RequestInit) => {
      const known = { id: expect.nodeId, cert: expect.cert };
      if (input instanceof Request) {
        const body = ["GET", "HEAD"].includes(input.method) ? undefined : await input.arrayBuffer();
        const fromRequest: RequestInit = { method: input.method, headers: input.headers, body };
        const { node, path } = nodeOfUrl(input.url, known);
        return this.send(node, path, { ...fromRequest, ...init });
      }
      const { node, path } = nodeOfUrl(String(input), known);
      return this.send(node, path, init ?? {});
    };
    return bound as typeof fetch;
  }

  /** The node id proven for an address by an earlier probe, if any. */
  nodeAt(host: string, port: number): string | undefined {
    const k = this.known.get(formatAddress({ host, port }));
    return k?.tls ? k.nodeId : undefined;
  }

  /** The id proven at `address` by the identity probe (probing once if needed); undefined over plain HTTP. */
  async identify(address: { host: string; port: number }): Promise<string | undefined> {
    const k = await this.resolve(address.host, address.port, undefined);
    return k.tls ? k.nodeId : undefined;
  }

  /** Whether the node at `address` serves TLS, as the last request there found (undefined: none yet). */
  servesTls(address: { host: string; port: number }): boolean | undefined {
    return this.known.get(formatAddress(address))?.tls;
  }

  /** Sends to `path` on `node`: pinned to `node.cert`, else to what the table holds or a probe finds. */
  async send(node: NodeRef, path: string, init: RequestInit): Promise<Response> {
    const { host, port } = node.address;
    const where = formatAddress(node.address);
    const rest = `${where}${path}`;
    let cert = node.cert;
    if (!cert) {
      const k = await abortable(this.resolve(host, port, node.id), init.signal);
      if (!k.tls) return this.fetchFn(`http://${rest}`, init);
      cert = k.cert;
    }
    try {
      if (this.o.fetch)
        return await this.fetchFn(`https://${rest}`, { ...init, tls: pinnedTls(cert) } as RequestInit);
      return await this.session(cert).fetch(`https://${rest}`, init as BunFetchRequestInit);
    } catch (err) {
      // a node may have a new certificate (a fresh home at the same address): probe again next time
      this.known.delete(where);
      throw err;
    }
  }

  private session(cert: string): Bun.FetchSession {
    let s = this.sessions.get(cert);
    if (!s) {
      if (this.sessions.size >= MAX_SESSIONS) {
        const [oldest, first] = this.sessions.entries().next().value as [string, Bun.FetchSession];
        first.close();
        this.sessions.delete(oldest);
      }
      s = new Bun.FetchSession({ tls: pinnedTls(cert), keepAlive: { idleTimeout: SESSION_IDLE_MS / 1000 } });
    } else {
      this.sessions.delete(cert); // re-inserted below: the map stays in least-recently-used order
    }
    this.sessions.set(cert, s);
    return s;
  }

  /**
   * Closes the idle connection pinned to `cert` (a request still in flight finishes): for a peer this
   * node will not contact again before the connection's idle timeout would close it anyway (see
   * pace.keepSession); the next request opens a new one.
   */
  release(cert: string): void {
    const s = this.sessions.get(cert);
    if (!s) return;
    s.close();
    this.sessions.delete(cert);
  }

  /** How many peers have a pinned keep-alive session (for tests). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Closes the idle pinned connections (a node that stops). */
  close(): void {
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }

  private async resolve(host: string, port: number, nodeId: string | undefined): Promise<Known> {
    const key = formatAddress({ host, port });
    const cached = this.known.get(key);
    if (cached && (!cached.tls || !nodeId || cached.nodeId === nodeId)) return cached;
    const fromTable = this.o.certAt?.(host, port, nodeId);
    if (fromTable && (!nodeId || fromTable.nodeId === nodeId)) {
      const k: Known = { tls: true, ...fromTable };
      this.known.set(key, k);
      return k;
    }
    const probed = await probeCertificate(host, port, this.o.probeTimeoutMs ?? 3000);
    if (!probed.tls) {
      if (this.o.requireTls) {
        throw new P2prcError("E_NODE_UNREACHABLE", `${key} serves plain HTTP, and this node requires TLS`, {
          hint: "run that node with TLS (the default), or set P2PRC_TLS=false here too",
        });
      }
      this.known.set(key, { tls: false });
      return { tls: false };
    }
    const record = await this.identity(host, port, probed.certPem);
    if (nodeId && record.record.id !== nodeId) {
      throw new P2prcError(
        "E_NODE_UNREACHABLE",
        `${key} answers as node ${record.record.id.slice(0, 12)}…, not ${nodeId.slice(0, 12)}…`,
      );
    }
    const k: Known = { tls: true, cert: probed.certPem, nodeId: record.record.id };
    this.known.set(key, k);
    return k;
  }

  /** The node's signed record from its identity probe, over TLS pinned to the probed certificate. */
  private async identity(host: string, port: number, cert: string): Promise<SignedRecord> {
    const where = formatAddress({ host, port });
    let body: { record?: unknown };
    try {
      const res = await this.fetchFn(`https://${where}/v1/identity`, {
        tls: pinnedTls(cert),
        signal: AbortSignal.timeout(this.o.probeTimeoutMs ?? 3000),
      } as RequestInit);
      body = (await res.json()) as { record?: unknown };
    } catch (err) {
      throw new P2prcError("E_NODE_UNREACHABLE", `cannot reach node ${where}: ${(err as Error).message}`, {
        cause: err,
        retryable: true,
      });
    }
    const record = verifyRecord(body.record);
    if (!record?.record.cert || certSha256(record.record.cert) !== certSha256(cert)) {
      throw new P2prcError(
        "E_NODE_UNREACHABLE",
        `${where}: its certificate is not the one its signed record names (refused: possible interception)`,
      );
    }
    return record;
  }
}
