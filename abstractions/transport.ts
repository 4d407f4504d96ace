import { type NodeRef, type NodeTransport, nodeOfUrl, PeerClient, type PeerRequest } from "../core/index.ts";
import type { PeerTable, PeerTransport } from "../p2p/index.ts";
import type { Store } from "../store/index.ts";
import { p2p } from "./lazy.ts";
import { type NodeContext, SERVER_URL_META } from "./node.ts";

/**
 * How this node reaches others: TLS pinned to the certificate each node's signed record in `table`
 * carries, or probed and checked against the node's signed identity for an address not in it.
 */
export async function peerTransport(ctx: NodeContext, table: PeerTable): Promise<PeerTransport> {
  const { PeerTransport } = await p2p();
  return new PeerTransport({
    requireTls: ctx.config.tls,
    certAt: (host, port, nodeId) => table.certAt(host, port, nodeId),
  });
}

/** This node's PeerClient: signs as this node, at its clock's time, over `transport`. */
export function peerClient(ctx: NodeContext, transport: NodeTransport): PeerClient {
  return new PeerClient({ identity: ctx.identity, clock: ctx.clock, transport });
}

/**
 * A signed request from this node to another (or to its own running server), over TLS pinned to the
 * node's certificate (from the IP table, or probed and checked against the node's signed record).
 * An error answer or an unreachable node throws a coded P2prcError (core's PeerClient).
 */
export async function nodeFetch(
  ctx: NodeContext,
  store: Store,
  node: NodeRef,
  path: string,
  init: PeerRequest,
): Promise<Response> {
  const { PeerTable } = await p2p();
  const transport = await peerTransport(ctx, new PeerTable(store.peers, ctx.identity.nodeId, ctx.clock));
  return peerClient(ctx, transport).request(node, path, init);
}

/**
 * This machine's running node, as this node (the same identity): where its server said it answers
 * (`server.url` in the store), else the config's host and port.
 */
export function localNode(ctx: NodeContext, store: Store): NodeRef {
  const host = ["0.0.0.0", "::", ""].includes(ctx.config.serverHost) ? "127.0.0.1" : ctx.config.serverHost;
  const started = store.meta.get(SERVER_URL_META);
  const self = { id: ctx.identity.nodeId };
  return started
    ? nodeOfUrl(started, self).node
    : { address: { host, port: ctx.config.serverPort }, tls: ctx.config.tls, ...self };
}
