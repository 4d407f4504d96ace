import { nodeUrl, P2prcError, tryParseAddress } from "../core/index.ts";
import type { PeerView } from "../p2p/index.ts";

/** A node to talk to: its URL, and its id and name when the IP table knows them. */
export interface NodeTarget {
  url: string;
  id?: string | undefined;
  name?: string | undefined;
  latencyMs?: number | undefined;
  offer?: PeerView["offer"] | undefined;
}

function target(v: PeerView): NodeTarget {
  if (!v.address || !v.port) {
    throw new P2prcError(
      "E_NODE_UNREACHABLE",
      `node ${v.name} (${v.id.slice(0, 12)}) has no known address yet`,
    );
  }
  return {
    // the scheme is what the node's record says
    url: nodeUrl({ host: v.address, port: v.port }, v.tls),
    id: v.id,
    name: v.name,
    latencyMs: v.latencyMs,
    offer: v.offer,
  };
}

/** A node the IP table holds as dead (a tombstone), with the name it went by when known. */
export interface DeadNode {
  id: string;
  name?: string | undefined;
}

/** What a container asks of its node, for `auto` to choose one that has it. */
export interface NodeNeeds {
  /** The node offers GPUs (its record's `offer.gpus` > 0). */
  gpu?: boolean | undefined;
}

/**
 * Placement score for `auto`: most free container slots first, then lowest latency. Documented in
 * Docs/Client.md; batch placement uses the same order.
 */
export function rankNodes(views: PeerView[], needs: NodeNeeds = {}): PeerView[] {
  return views
    .filter(
      (v) =>
        v.state === "alive" && v.address && v.offer.freeContainers > 0 && (!needs.gpu || v.offer.gpus > 0),
    )
    .sort(
      (a, b) =>
        b.offer.freeContainers - a.offer.freeContainers ||
        (a.latencyMs ?? Number.POSITIVE_INFINITY) - (b.latencyMs ?? Number.POSITIVE_INFINITY) ||
        a.id.localeCompare(b.id),
    );
}

/**
 * Resolves what a user typed for a node: `auto`, `host:port`, a node id, a unique id prefix (4+
 * characters) or a unique name from the IP table. A dead node's id or prefix is E_NODE_UNREACHABLE.
 */
export function resolveNode(
  ref: string,
  views: PeerView[],
  needs: NodeNeeds = {},
  /** Nodes the table holds as dead: named by id, prefix or former name, they are reported as dead, not unknown. */
  dead: DeadNode[] = [],
): NodeTarget {
  const text = ref.trim();
  if (text === "auto") {
    const best = rankNodes(views, needs)[0];
    if (!best) {
      const gpu = needs.gpu && rankNodes(views).length > 0;
      throw new P2prcError(
        "E_NOT_FOUND",
        gpu ? "no known node with free capacity has GPUs" : "no node with free capacity is known",
        {
          field: gpu ? "gpu" : "node",
          hint: gpu
            ? "leave out --gpu, or add a node with GPUs (--as host:port); --ls lists the known nodes"
            : "add nodes with --as host:port, or check --ls",
        },
      );
    }
    return target(best);
  }
  const a = tryParseAddress(text);
  if (a) {
    const known = views.find((v) => v.address === a.host && v.port === a.port);
    // not in the table: "http" until the transport finds out (it probes, and pins what it finds)
    return known ? target(known) : { url: nodeUrl(a, false) };
  }
  const exact = views.find((v) => v.id === text.toLowerCase());
  if (exact) return target(exact);
  const byPrefixOk = /^[0-9a-f]{4,63}$/i.test(text);
  const byPrefix = byPrefixOk ? views.filter((v) => v.id.startsWith(text.toLowerCase())) : [];
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
  const gone = dead.filter(
    ({ id, name }) =>
      id === text.toLowerCase() || (byPrefixOk && id.startsWith(text.toLowerCase())) || name === text,
  );
  if (gone.length > 0) {
    const { id, name } = gone[0] as DeadNode;
    throw new P2prcError(
      "E_NODE_UNREACHABLE",
      `node ${name ? `${name} (${id.slice(0, 12)})` : `${id.slice(0, 12)}…`} is dead: the network declared it gone (it stopped answering or left)`,
      { field: "node", hint: "choose another node from --ls, or auto" },
    );
  }
  throw new P2prcError("E_NOT_FOUND", `unknown node "${text}"`, {
    field: "node",
    hint: "give a node id, a unique id prefix, a name from --ls, host:port, or auto",
  });
}
