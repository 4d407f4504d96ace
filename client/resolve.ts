import { P2prcError } from "../config/index.ts";
import type { PeerView } from "../p2p/index.ts";

/** A node to talk to: its URL, and its id and name when the IP table knows them. */
export interface NodeTarget {
  url: string;
  id?: string | undefined;
  name?: string | undefined;
  latencyMs?: number | undefined;
  offer?: PeerView["offer"] | undefined;
}

// The scheme is what the node's record says; for an address not in the table the transport finds out.
const urlOf = (host: string, port: number, tls = false) =>
  `${tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;

function target(v: PeerView): NodeTarget {
  if (!v.address || !v.port) {
    throw new P2prcError(
      "E_NODE_UNREACHABLE",
      `node ${v.name} (${v.id.slice(0, 12)}) has no known address yet`,
    );
  }
  return {
    url: urlOf(v.address, v.port, v.tls),
    id: v.id,
    name: v.name,
    latencyMs: v.latencyMs,
    offer: v.offer,
  };
}

/**
 * Placement score for `auto`: most free container slots first, then lowest latency. Documented in
 * Docs/Client.md; batch placement uses the same order.
 */
export function rankNodes(views: PeerView[]): PeerView[] {
  return views
    .filter((v) => v.state === "alive" && v.address && v.offer.freeContainers > 0)
    .sort(
      (a, b) =>
        b.offer.freeContainers - a.offer.freeContainers ||
        (a.latencyMs ?? Number.POSITIVE_INFINITY) - (b.latencyMs ?? Number.POSITIVE_INFINITY) ||
        a.id.localeCompare(b.id),
    );
}

/**
 * Resolves what a user typed for a node: `auto`, `host:port`, a node id, a unique id prefix (4+
 * characters) or a unique name from the IP table.
 */
export function resolveNode(ref: string, views: PeerView[]): NodeTarget {
  const text = ref.trim();
  if (text === "auto") {
    const best = rankNodes(views)[0];
    if (!best) {
      throw new P2prcError("E_NOT_FOUND", "no node with free capacity is known", {
        hint: "add nodes with --as host:port, or check --ls",
      });
    }
    return target(best);
  }
  const hp = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (hp?.[1] && Number(hp[2]) >= 1 && Number(hp[2]) <= 65535) {
    const host = hp[1].replace(/^\[|\]$/g, "");
    const known = views.find((v) => v.address === host && v.port === Number(hp[2]));
    return known ? target(known) : { url: urlOf(host, Number(hp[2])) };
  }
  const exact = views.find((v) => v.id === text.toLowerCase());
  if (exact) return target(exact);
  const byPrefix = /^[0-9a-f]{4,63}$/i.test(text)
    ? views.filter((v) => v.id.startsWith(text.toLowerCase()))
    : [];
  const byName = views.filter((v) => v.name === text);
  const matches = [...new Map([...byPrefix, ...byName].map((v) => [v.id, v])).values()];
  if (matches.length === 1) return target(matches[0] as PeerView);
  if (matches.length > 1) {
    throw new P2prcError(
      "E_INVALID",
      `node "${text}" is ambiguous: ${matches.map((m) => `${m.name} ${m.id.slice(0, 12)}`).join(", ")}`,
      { field: "node" },
    );
  }
  throw new P2prcError("E_NOT_FOUND", `unknown node "${text}"`, {
    field: "node",
    hint: "give a node id, a unique id prefix, a name from --ls, host:port, or auto",
  });
}
