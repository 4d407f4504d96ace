// A relay's public ports (`p2prc --mp <port> --public`): the node behind the NAT asks on its tunnel,
// the relay listens on a free port of its configured range, and each connection to it becomes a
// stream to that node's mapped port, with no hello (anyone may connect: that is what public means).
// With a domain (`--dn`), the mapping shares the relay's HTTP port instead: a connection goes to the
// mapping whose domain its first request's Host header names (P2PRC's `--dn`).
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { RelayLimits, RelayStats } from "./types.ts";

/** What the relay answers a `publish` line with (sent back on the tunnel as `{t: "published", …}`). */
export type PublishAnswer =
  | { port: number; ok: true; public: number; domain?: string }
  | { port: number; ok: false; code: "E_LIMIT" | "E_CONFLICT"; message: string };

/** The public ports of one relay, by node and mapped port. */
export interface PublicPorts {
  publish(node: string, port: number, domain?: string): PublishAnswer;
  unpublish(node: string, port: number): void;
  /** The node's tunnel closed: its public ports close with it. */
  closeNode(node: string): void;
  stop(): void;
}

/**
 * Public listeners on `host` within the limits' range; each accepted socket goes to `accept(node,
 * port, socket)` with the relay's own socket handlers for everything after `open`.
 */
export function publicPorts<T>(o: {
  host: string;
  limits: RelayLimits;
  stats: RelayStats;
  handlers: Omit<SocketHandler<T>, "open">;
  /** `early`: bytes already read (an HTTP request head), to go to the node first. */
  accept: (node: string, port: number, socket: Socket<T>, early?: Uint8Array) => void;
  /** The shared HTTP port for domains (`--dn`); undefined: no domain routing. */
  httpPort?: number | undefined;
}): PublicPorts {
  const byNode = new Map<string, Map<number, TCPSocketListener<T>>>();
  const used = new Set<number>();
  /** domain → the node and mapped port it routes to. */
  const domains = new Map<string, { node: string; port: number }>();
  const http = o.httpPort === undefined ? undefined : httpRouter(o, domains);
  const listen = (node: string, port: number): TCPSocketListener<T> | undefined => {
    for (let p = o.limits.publicPortMin; p <= o.limits.publicPortMax; p++) {
      if (used.has(p)) continue;
      try {
        return Bun.listen<T>({
          hostname: o.host,
          port: p,
          socket: { ...o.handlers, open: (s) => o.accept(node, port, s) },
        });
      } catch {
        // in use by another program: the next one
      }
    }
    return undefined;
  };
  const close = (node: string, port: number) => {
    unroute(node, port);
    const l = byNode.get(node)?.get(port);
    if (!l) return;
    byNode.get(node)?.delete(port);
    used.delete(l.port);
    o.stats.publicPorts--;
    l.stop(true);
  };
  const unroute = (node: string, port?: number) => {
    for (const [d, r] of domains)
      if (r.node === node && (port === undefined || r.port === port)) {
        domains.delete(d);
        o.stats.publicPorts--;
      }
  };
  return {
    publish(node, port, domain) {
      const old = byNode.get(node)?.get(port);
      if (old) return { port, ok: true, public: old.port };
      const refuse = (message: string, code: "E_LIMIT" | "E_CONFLICT" = "E_LIMIT"): PublishAnswer => {
        o.stats.refused.publicLimit++;
        return { port, ok: false, code, message };
      };
      if (domain !== undefined) {
        const name = domain.toLowerCase();
        const owner = domains.get(name);
        if (!http) return refuse("this relay routes no domains (no relayHttpPort)");
        if (owner && (owner.node !== node || owner.port !== port))
          return refuse(`domain ${name} is another mapping's here`, "E_CONFLICT");
        if (owner) return { port, ok: true, public: http.port, domain: name };
        if (o.stats.publicPorts >= o.limits.maxPublicPorts)
          return refuse(`relay at its limit of ${o.limits.maxPublicPorts} public ports`);
        unroute(node, port);
        domains.set(name, { node, port });
        o.stats.publicPorts++;
        return { port, ok: true, public: http.port, domain: name };
      }
      if (o.stats.publicPorts >= o.limits.maxPublicPorts)
        return refuse(
          o.limits.maxPublicPorts === 0
            ? "this relay opens no public ports"
            : `relay at its limit of ${o.limits.maxPublicPorts} public ports`,
        );
      const l = listen(node, port);
      if (!l) return refuse(`no free port in ${o.limits.publicPortMin}-${o.limits.publicPortMax}`);
      used.add(l.port);
      o.stats.publicPorts++;
      const mine = byNode.get(node) ?? new Map();
      byNode.set(node, mine.set(port, l));
      return { port, ok: true, public: l.port };
    },
    unpublish: close,
    closeNode(node) {
      for (const port of [...(byNode.get(node)?.keys() ?? [])]) close(node, port);
      byNode.delete(node);
      unroute(node);
    },
    stop() {
      for (const node of [...byNode.keys()]) this.closeNode(node);
      domains.clear();
      http?.stop(true);
    },
  };
}

const HEAD_MAX = 8192;
const NOT_FOUND =
  "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 24\r\nconnection: close\r\n\r\nno such domain on relay\n";

/** The Host of an HTTP request head (lower case, without its port), or undefined. */
export function hostOf(head: string): string | undefined {
  const m = /\r\nhost:[ \t]*([^\r\n]*)/i.exec(head);
  const host = m?.[1]?.trim().toLowerCase();
  return host ? host.replace(/:\d+$/, "") : undefined;
}

/**
 * The relay's HTTP port: reads each connection's first request head (up to 8 KB), then hands the
 * connection, with those bytes, to the mapping its Host names; an unknown one gets a 404.
 */
function httpRouter<T>(
  o: {
    host: string;
    handlers: Omit<SocketHandler<T>, "open">;
    accept: (node: string, port: number, socket: Socket<T>, early?: Uint8Array) => void;
    httpPort?: number | undefined;
  },
  domains: Map<string, { node: string; port: number }>,
): TCPSocketListener<T> {
  const sniffing = new WeakMap<Socket<T>, Buffer>();
  const { data, close } = o.handlers;
  return Bun.listen<T>({
    hostname: o.host,
    port: o.httpPort ?? 0,
    socket: {
      ...o.handlers,
      open: (s) => void sniffing.set(s, Buffer.alloc(0)),
      data(s, chunk) {
        const head = sniffing.get(s);
        if (!head) return data?.(s, chunk);
        const got = Buffer.concat([head, chunk]);
        const end = got.indexOf("\r\n\r\n");
        if (end < 0 && got.length < HEAD_MAX) return void sniffing.set(s, got);
        sniffing.delete(s);
        const route = domains.get(
          hostOf(got.subarray(0, end < 0 ? HEAD_MAX : end + 2).toString("latin1")) ?? "",
        );
        if (!route) {
          s.write(NOT_FOUND);
          s.end();
          return;
        }
        o.accept(route.node, route.port, s, got);
      },
      close(s, err) {
        if (sniffing.delete(s)) return;
        return close?.(s, err);
      },
    },
  });
}
