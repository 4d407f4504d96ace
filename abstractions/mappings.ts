// Port mappings (P2PRC's `--mp`): a port on this node's machine, or a container's, that members reach
// through the relay this node keeps a tunnel to. The CLI writes them to the store; the running node
// reads them at each stream (RelayAgentOptions.mapped) and closes the streams of a removed one.
import { P2prcError } from "../core/index.ts";
import type { RelayEndpoint } from "../p2p/index.ts";
import type { MetaStore, Store } from "../store/index.ts";
import { init, type NodeOptions } from "./node.ts";

/** Meta keys: the mappings, the relay the running node is reachable through, the relay `--ra` chose. */
export const MAPPINGS_META = "relay.mappings";
export const RELAY_CURRENT_META = "relay.current";
export const RELAY_PREFERRED_META = "relay.preferred";
/** The relay's answers for the public mappings: `[{port, public?, error?}]` (written by the node). */
export const RELAY_PUBLISHED_META = "relay.published";

/** One mapping: members who ask for `port` through the relay reach `target` on this machine. */
export interface Mapping {
  port: number;
  target: { host: string; port: number };
  /** The container whose port this is (`--id`), if any. */
  container?: string | undefined;
  /** A public mapping routed by this Host on the relay's HTTP port (`--dn`), not a port of its own. */
  domain?: string | undefined;
  /** Who may use it: members of this node's clusters, or (`--public`) anyone, at a public port of the relay. */
  access: "members" | "public";
  createdAt: number;
}

/** A mapping as `--mp` and `p2prc mappings` print it: with the relay it is reachable through now. */
export interface MappingView extends Mapping {
  node: string;
  /** The relay the node is reachable through now; undefined while it is not relayed (or not running). */
  relay: RelayEndpoint | undefined;
  /** What a member runs to reach it on a local port. */
  forward: string;
  /** A public mapping: its address on the relay (`host:port`), or why the relay refused it. */
  public?: { address?: string; error?: string } | undefined;
}

/** The mappings held in `meta` (none when unset or unreadable). */
export function readMappings(meta: MetaStore): Mapping[] {
  try {
    const list = JSON.parse(meta.get(MAPPINGS_META) ?? "[]") as Mapping[];
    return Array.isArray(list) ? list.filter((m) => Number.isInteger(m?.port) && m.target) : [];
  } catch {
    return [];
  }
}

/** The relay the running node last said it is reachable through (written by start.ts). */
export function currentRelay(meta: MetaStore): RelayEndpoint | undefined {
  try {
    return (JSON.parse(meta.get(RELAY_CURRENT_META) ?? "null") as RelayEndpoint | null) ?? undefined;
  } catch {
    return undefined;
  }
}

/** The relay's answer for public mapping `port`, if it gave one. */
function publicAnswer(meta: MetaStore, port: number): { public?: number; error?: string } | undefined {
  try {
    const all = JSON.parse(meta.get(RELAY_PUBLISHED_META) ?? "[]") as {
      port: number;
      public?: number;
      error?: string;
    }[];
    return all.find((a) => a.port === port);
  } catch {
    return undefined;
  }
}

function view(store: Store, nodeId: string, m: Mapping): MappingView {
  const relay = currentRelay(store.meta);
  const answer = m.access === "public" && relay ? publicAnswer(store.meta, m.port) : undefined;
  return {
    ...m,
    node: nodeId,
    relay,
    forward: `p2prc forward ${nodeId} ${m.port} --local ${m.port}`,
    ...(answer
      ? {
          public: answer.public
            ? {
                address: m.domain
                  ? `http://${m.domain}:${answer.public}/ (Host ${m.domain} at ${relay?.host}:${answer.public})`
                  : `${relay?.host}:${answer.public}`,
              }
            : { error: answer.error ?? "refused" },
        }
      : {}),
  };
}

function checkPort(port: number, flag: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new P2prcError("E_INVALID", `${flag}: expected a port from 1 to 65535, got "${port}"`, {
      field: flag,
    });
}

/** What `mapPort` takes: the port, and optionally the container whose port it is and the relay. */
export interface MapPortOptions {
  port: number;
  /** A container of this node (id or name): its published port for `port` is mapped. */
  container?: string | undefined;
  /** The relay to prefer (its node id, as the IP table resolves `--ra`). */
  relayId?: string | undefined;
  /** Open it to anyone at a public port of the relay (`--public`), not only to members. */
  public?: boolean | undefined;
  /** Route it by this Host on the relay's HTTP port (`--dn`; implies `public`). */
  domain?: string | undefined;
}

/**
 * `p2prc --mp <port> [--id <container>] [--ra <node>] [--public]`: maps a port of this machine
 * (127.0.0.1) or a container's for the members of this node's clusters, or for anyone at a public port
 * of the relay. Mapping a port again to the same target sets who may use it; to another target,
 * E_CONFLICT.
 */
export function mapPort(options: NodeOptions, o: MapPortOptions): MappingView {
  checkPort(o.port, "--mp");
  const ctx = init(options);
  const store = ctx.openStore();
  try {
    let target = { host: "127.0.0.1", port: o.port };
    if (o.container !== undefined) {
      const c = store.containers.get(o.container);
      if (!c)
        throw new P2prcError("E_NOT_FOUND", `no container ${o.container} on this node`, {
          field: "id",
          hint: "--id takes a container this node runs (p2prc ps lists them)",
        });
      const published = c.ports.find((p) => p.internal === o.port);
      if (!published)
        throw new P2prcError(
          "E_NOT_FOUND",
          `container ${o.container} does not publish port ${o.port} (it publishes ${c.ports.map((p) => p.internal).join(", ") || "none"})`,
          { field: "mp", hint: "create it with --publish <port>" },
        );
      // containers' ports listen where the server publishes them (an all-interfaces bind: loopback)
      const host = ctx.config.publishHost || ctx.config.serverHost;
      target = { host: ["0.0.0.0", "::", ""].includes(host) ? "127.0.0.1" : host, port: published.external };
    }
    const access = o.public || o.domain ? "public" : "members";
    const domain = o.domain?.toLowerCase();
    const all = readMappings(store.meta);
    const old = all.find((m) => m.port === o.port);
    if (old && (old.target.host !== target.host || old.target.port !== target.port))
      throw new P2prcError(
        "E_CONFLICT",
        `port ${o.port} is already mapped to ${old.container ? `container ${old.container}` : `${old.target.host}:${old.target.port}`}`,
        { field: "mp", hint: `remove it first: p2prc mappings rm ${o.port}` },
      );
    const mapping: Mapping = {
      ...(old ?? {
        port: o.port,
        target,
        ...(o.container !== undefined ? { container: o.container } : {}),
        createdAt: ctx.clock.now(),
      }),
      access,
      domain,
    };
    store.transaction(() => {
      if (old?.access !== access || old.domain !== domain)
        store.meta.set(MAPPINGS_META, JSON.stringify([...all.filter((m) => m !== old), mapping]));
      if (o.relayId) store.meta.set(RELAY_PREFERRED_META, o.relayId);
    });
    return view(store, ctx.identity.nodeId, mapping);
  } finally {
    store.close();
  }
}

/** `p2prc mappings`: every mapping of this node, with the relay it is reachable through now. */
export function listMappings(options: NodeOptions): MappingView[] {
  const ctx = init(options);
  const store = ctx.openStore();
  try {
    return readMappings(store.meta).map((m) => view(store, ctx.identity.nodeId, m));
  } finally {
    store.close();
  }
}

/** `p2prc mappings rm <port>`: removes a mapping; the running node closes its open streams. */
export function unmapPort(options: NodeOptions, port: number): Mapping {
  checkPort(port, "port");
  const ctx = init(options);
  const store = ctx.openStore();
  try {
    const all = readMappings(store.meta);
    const gone = all.find((m) => m.port === port);
    if (!gone)
      throw new P2prcError("E_NOT_FOUND", `port ${port} is not mapped`, {
        hint: "p2prc mappings lists them",
      });
    store.meta.set(MAPPINGS_META, JSON.stringify(all.filter((m) => m.port !== port)));
    return gone;
  } finally {
    store.close();
  }
}
