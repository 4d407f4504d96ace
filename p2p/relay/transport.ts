// A NodeTransport (core/peer-client.ts) that reaches a relayed node through its relay: the request goes
// to a loopback forwarder for that node, and the base transport pins TLS to the node's own certificate
// as for any node. Callers of the peer client do not know whether a node is relayed.
import type { Identity, Logger, NodeRef, NodeTransport } from "../../core/index.ts";
import { openRelayForwarder, type RelayForwarder } from "./dial.ts";
import { noRelayNow } from "./route.ts";
import type { RelayEndpoint } from "./types.ts";

export interface RelayTransportOptions {
  /** How a direct node is reached, and how a relayed one is once its forwarder is up (PeerTransport). */
  base: NodeTransport;
  /** The caller's key (the relay serves members only). */
  identity: Identity;
  /** The relay a node is reached through (from its record), or undefined: a direct node. */
  relayOf: (node: NodeRef) => RelayEndpoint | undefined;
  /**
   * Whether a node is reached through a relay at all (its record says so): such a node with no relay
   * known right now fails at once, retryable, instead of being dialed behind its NAT (a silent drop).
   */
  relayed?: (node: NodeRef) => boolean;
  /**
   * The certificate of a node by id (its record's `cert`), for a relayed node given without one: the
   * base transport pins it at the forwarder's address (else it probes there, through the relay).
   */
  certOf?: (id: string) => string | undefined;
  /** Most forwarders kept open (one per relay and node); the least recently used closes first. */
  maxForwarders?: number;
  logger?: Logger;
}

/** A NodeTransport that also has forwarders to close. */
export interface RelayTransport extends NodeTransport {
  close(): Promise<void>;
}

/**
 * Routes requests to relayed nodes through their relay, the others to `base` unchanged.
 *
 * @example
 *   const transport = relayTransport({ base: peerTransport, identity, relayOf: (n) => relayOfRecord(n.id) });
 *   const client = new PeerClient({ identity, clock, transport });
 */
export function relayTransport(o: RelayTransportOptions): RelayTransport {
  const max = o.maxForwarders ?? 64;
  const forwarders = new Map<string, Promise<RelayForwarder>>();
  const forwarder = (relay: RelayEndpoint, target: string) => {
    const key = `${relay.host}:${relay.port}/${target}`;
    let f = forwarders.get(key);
    if (f)
      forwarders.delete(key); // re-inserted below: least recently used first
    else {
      f = openRelayForwarder({ relay, target, identity: o.identity, logger: o.logger });
      f.catch(() => forwarders.delete(key));
      if (forwarders.size >= max) {
        const [oldest, first] = forwarders.entries().next().value as [string, Promise<RelayForwarder>];
        forwarders.delete(oldest);
        first.then((x) => x.stop()).catch(() => undefined);
      }
    }
    forwarders.set(key, f);
    return f;
  };
  return {
    async send(node, path, init) {
      const relay = node.id ? o.relayOf(node) : undefined;
      if (!relay && node.id && o.relayed?.(node)) throw noRelayNow(node.id.slice(0, 12));
      if (!relay || !node.id) return o.base.send(node, path, init);
      const fwd = await forwarder(relay, node.id);
      const cert = node.cert ?? o.certOf?.(node.id);
      const via: NodeRef = { ...node, address: { host: fwd.host, port: fwd.port } };
      if (cert) via.cert = cert;
      return o.base.send(via, path, init);
    },
    // what the base transport knows of an address (a node given as host:port that serves TLS)
    servesTls: (address) => o.base.servesTls?.(address),
    // a host:port is dialed directly (only a node known by id goes through a relay)
    identify: async (address) => o.base.identify?.(address),
    async close() {
      const all = [...forwarders.values()];
      forwarders.clear();
      await Promise.all(all.map((f) => f.then((x) => x.stop()).catch(() => undefined)));
    },
  };
}
