import type { Store } from "../config/index.ts";
import type { capacityOf } from "../server/index.ts";
import { type NodeContext, tlsMaterial } from "./node.ts";

type Capacity = ReturnType<typeof capacityOf>;

/** This node's IP table and gossip, offering what `capacity` reports (the server's, or a client's none). */
export async function createGossip(ctx: NodeContext, store: Store, capacity: () => Promise<Capacity>) {
  const { ClusterBook, GossipService, PeerTable, PeerTransport } = await import("../p2p/index.ts");
  const table = new PeerTable(store, ctx.identity.nodeId, ctx.clock);
  const transport = new PeerTransport({
    requireTls: ctx.config.tls,
    certAt: (host, port, nodeId) => table.certAt(host, port, nodeId),
  });
  const certPem = ctx.config.tls ? (await tlsMaterial(ctx)).certPem : undefined;
  const clusters = new ClusterBook({
    store,
    selfId: ctx.identity.nodeId,
    clock: ctx.clock,
    logger: ctx.logger,
    trusted: ctx.config.trusted,
    openNetwork: ctx.config.openNetwork,
  });
  const gossip = new GossipService({
    identity: ctx.identity,
    store,
    table,
    config: ctx.config,
    clock: ctx.clock,
    logger: ctx.logger,
    clusters,
    transport,
    certPem,
    offer: async () => {
      const { running: _running, ...offer } = await capacity();
      return offer;
    },
  });
  return { table, gossip, clusters, transport };
}
