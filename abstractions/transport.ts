import { signRequest } from "../core/index.ts";
import type { PeerTable, PeerTransport } from "../p2p/index.ts";
import type { Store } from "../store/index.ts";
import type { NodeContext } from "./node.ts";

/**
 * How this node reaches others: TLS pinned to the certificate each node's signed record in `table`
 * carries, or probed and checked against the node's signed identity for an address not in it.
 */
export async function peerTransport(ctx: NodeContext, table: PeerTable): Promise<PeerTransport> {
  const { PeerTransport } = await import("../p2p/index.ts");
  return new PeerTransport({
    requireTls: ctx.config.tls,
    certAt: (host, port, nodeId) => table.certAt(host, port, nodeId),
  });
}

/**
 * A signed request from this node to another (or to its own running server), over TLS pinned to the
 * node's certificate (from the IP table, or probed and checked against the node's signed record).
 */
export async function nodeFetch(
  ctx: NodeContext,
  store: Store,
  url: string,
  init: { method: string; json?: unknown; timeoutMs: number },
): Promise<Response> {
  const { PeerTable } = await import("../p2p/index.ts");
  const transport = await peerTransport(ctx, new PeerTable(store.peers, ctx.identity.nodeId, ctx.clock));
  const body = init.json === undefined ? "" : JSON.stringify(init.json);
  const headers: Record<string, string> = signRequest(ctx.identity, init.method, url, body);
  if (init.json !== undefined) headers["content-type"] = "application/json";
  return transport.fetchFor()(url, {
    method: init.method,
    headers,
    body: init.json === undefined ? undefined : body,
    signal: AbortSignal.timeout(init.timeoutMs),
  });
}
