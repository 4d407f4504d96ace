// Which relay reaches a node, from the signed records held: the node's record says `reach: "relay"`
// and names its relays; a relay's own record gives its address and `relayPort`.
import { type NodeRef, P2prcError } from "../../core/index.ts";
import type { NodeRecord, PeerView } from "../types.ts";
import type { RelayEndpoint } from "./types.ts";

/**
 * `relayOf` for relayTransport: the first relay `node`'s record names whose own record has an address
 * and a relay port; undefined for a direct node (or one whose relays are not known here).
 *
 * @example
 *   relayTransport({ base, identity, relayOf: relayFromRecords((id) => table.record(id)?.record) });
 */
export function relayFromRecords(
  records: (id: string) => NodeRecord | undefined,
): (node: NodeRef) => RelayEndpoint | undefined {
  return (node) => {
    const record = node.id ? records(node.id) : undefined;
    if (record?.reach !== "relay") return undefined;
    for (const id of record.relays ?? []) {
      const relay = records(id);
      const address = relay?.addresses[0];
      if (relay?.relayPort && address) return { host: address.host, port: relay.relayPort, nodeId: id };
    }
    return undefined;
  };
}

/**
 * Whether `node`'s record says it is reached through a relay. Such a node is never dialed at its own
 * address, even while its record names no relay (between losing one and re-signing with the next): that
 * address sits behind a NAT that silently drops the dial.
 */
export function relayedByRecords(
  records: (id: string) => NodeRecord | undefined,
): (node: NodeRef) => boolean {
  return (node) => (node.id ? records(node.id)?.reach === "relay" : false);
}

/**
 * The refusal for a relayed node whose record names no relay right now (it is moving to another):
 * retryable, and raised at once rather than dialing the node's own address behind its NAT.
 */
export function noRelayNow(node: string): P2prcError {
  return new P2prcError("E_NODE_UNREACHABLE", `node ${node} is behind a NAT and names no relay right now`, {
    retryable: true,
    hint: "try again in a few seconds",
  });
}

/**
 * The relays members offer, from the IP table: live nodes reached directly whose record has a relay
 * port, nearest first (by the latency this node measured); never `selfId`.
 */
export function offeredRelays(
  views: PeerView[],
  records: (id: string) => NodeRecord | undefined,
  selfId: string,
): RelayEndpoint[] {
  return views
    .filter((v) => v.id !== selfId && v.state === "alive" && v.reach === "direct" && v.address)
    .sort((a, b) => (a.latencyMs ?? Number.POSITIVE_INFINITY) - (b.latencyMs ?? Number.POSITIVE_INFINITY))
    .flatMap((v) => {
      const port = records(v.id)?.relayPort;
      return port && v.address ? [{ host: v.address, port, nodeId: v.id }] : [];
    });
}
