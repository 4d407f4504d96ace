// A relay's public ports (`p2prc --mp <port> --public`): the node behind the NAT asks on its tunnel,
// the relay listens on a free port of its configured range, and each connection to it becomes a
// stream to that node's mapped port, with no hello (anyone may connect: that is what public means).
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { RelayLimits, RelayStats } from "./types.ts";

/** What the relay answers a `publish` line with (sent back on the tunnel as `{t: "published", …}`). */
export type PublishAnswer =
  | { port: number; ok: true; public: number }
  | { port: number; ok: false; code: "E_LIMIT"; message: string };

/** The public ports of one relay, by node and mapped port. */
export interface PublicPorts {
  publish(node: string, port: number): PublishAnswer;
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
  accept: (node: string, port: number, socket: Socket<T>) => void;
}): PublicPorts {
  const byNode = new Map<string, Map<number, TCPSocketListener<T>>>();
  const used = new Set<number>();
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
    const l = byNode.get(node)?.get(port);
    if (!l) return;
    byNode.get(node)?.delete(port);
    used.delete(l.port);
    o.stats.publicPorts--;
    l.stop(true);
  };
  return {
    publish(node, port) {
      const old = byNode.get(node)?.get(port);
      if (old) return { port, ok: true, public: old.port };
      const refuse = (message: string): PublishAnswer => {
        o.stats.refused.publicLimit++;
        return { port, ok: false, code: "E_LIMIT", message };
      };
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
    },
    stop() {
      for (const node of [...byNode.keys()]) this.closeNode(node);
    },
  };
}
