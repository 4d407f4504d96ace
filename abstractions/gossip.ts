import type { ClusterBook, ReachState } from "../p2p/index.ts";
import type { capacityOf } from "../server/index.ts";
import type { Store } from "../store/index.ts";
import { p2p } from "./lazy.ts";
import { type NodeContext, tlsMaterial } from "./node.ts";
import { peerTransport } from "./transport.ts";

type Capacity = ReturnType<typeof capacityOf>;

/** Who may use this node (itself, `trusted`, its clusters' members, or anyone on an open network). */
export async function openClusterBook(ctx: NodeContext, store: Store): Promise<ClusterBook> {
  const { ClusterBook } = await p2p();
  return new ClusterBook({
    documents: store.clusters,
    selfId: ctx.identity.nodeId,
    clock: ctx.clock,
    logger: ctx.logger,
    trusted: ctx.config.trusted,
    openNetwork: ctx.config.openNetwork,
  });
}

/**
 * This node's IP table and gossip, offering what `capacity` reports (the server's, or a client's none),
 * and its TLS certificate (config `tls`), which its record carries and its server serves. `reach` says
 * how members reach this node (a server node's ReachService; default: config `behindNat`).
 */
export async function createGossip(
  ctx: NodeContext,
  store: Store,
  capacity: () => Promise<Capacity>,
  reach?: () => ReachState | undefined,
  relayPort?: () => number | undefined,
) {
  const { GossipService, PeerTable } = await p2p();
  const table = new PeerTable(store.peers, ctx.identity.nodeId, ctx.clock);
  const transport = await peerTransport(ctx, table);
  const tls = ctx.config.tls ? await tlsMaterial(ctx) : undefined;
  const clusters = await openClusterBook(ctx, store);
  const gossip = new GossipService({
    identity: ctx.identity,
    peers: store.peers,
    meta: store.meta,
    table,
    config: ctx.config,
    clock: ctx.clock,
    logger: ctx.logger,
    clusters,
    transport,
    certPem: tls?.certPem,
    reach,
    relayPort,
    offer: async () => {
      const { running: _running, ...offer } = await capacity();
      return offer;
    },
  });
  return { table, gossip, clusters, transport, tls };
}
