// A port on a node's machine, reached the way the node is: through its relay when its record says it
// is relayed (a signed stream the node checks), else directly. `p2prc proxy` (ssh's ProxyCommand)
// carries stdin/stdout over it; `p2prc forward` opens a loopback listener for it.
import type { Socket } from "bun";
import { nodeOfUrl, P2prcError } from "../core/index.ts";
import type { RelayEndpoint, RelayForwarder } from "../p2p/index.ts";
import { client, p2p } from "./lazy.ts";
import { init, type NodeContext, type NodeOptions } from "./node.ts";

/** How a node is reached: its id, its address, and its relay when it is relayed. */
export interface NodeRoute {
  id: string;
  name?: string | undefined;
  address: { host: string; port: number };
  relay: RelayEndpoint | undefined;
}

/** Resolves `ref` (id, prefix, name, host:port) in the IP table, with the relay its record names. */
export async function routeTo(
  options: NodeOptions,
  ref: string,
): Promise<{ ctx: NodeContext; node: NodeRoute }> {
  const { noRelayNow, PeerTable, relayedByRecords, relayFromRecords } = await p2p();
  const { resolveNode } = await client();
  const ctx = init(options);
  const store = ctx.openStore();
  try {
    const table = new PeerTable(store.peers, ctx.identity.nodeId, ctx.clock);
    const target = resolveNode(ref, table.views(), {}, table.dead());
    if (!target.id)
      throw new P2prcError("E_NOT_FOUND", `node ${ref} is not in the IP table`, {
        hint: "p2prc --ls lists the known nodes",
      });
    const { address } = nodeOfUrl(target.url).node;
    const record = (id: string) => table.record(id)?.record;
    const nodeRef = { id: target.id, address };
    const relay = relayFromRecords(record)(nodeRef);
    // a relayed node is never dialed behind its NAT, even between two relays (that dial would hang)
    if (!relay && relayedByRecords(record)(nodeRef)) throw noRelayNow(ref);
    return { ctx, node: { id: target.id, name: target.name, address, relay } };
  } finally {
    store.close();
  }
}

/** Where `proxyStdio` reads and writes. */
export interface StdioLike {
  input: ReadableStream<Uint8Array>;
  output: (chunk: Uint8Array) => void;
}

/**
 * `p2prc proxy <node> <port>`: carries `io` to port `port` on the node's machine until either side
 * closes (ssh's `ProxyCommand`). A relayed node is reached through its relay, as this node's key (the
 * node lets a member reach its own containers' ports and the ports it mapped); a direct one at its address.
 */
export async function proxyStdio(
  options: NodeOptions,
  ref: string,
  port: number,
  io: StdioLike,
): Promise<void> {
  const { dialThroughRelay } = await p2p();
  const { ctx, node } = await routeTo(options, ref);
  let drainWaiter: (() => void) | undefined;
  let closed!: () => void;
  const done = new Promise<void>((resolve) => {
    closed = resolve;
  });
  const sink = {
    data: (chunk: Uint8Array) => io.output(chunk),
    drain: () => drainWaiter?.(),
    close: () => closed(),
  };
  let socket: Socket<unknown>;
  if (node.relay) {
    const conn = await dialThroughRelay({ relay: node.relay, target: node.id, identity: ctx.identity, port });
    conn.attach(sink);
    socket = conn.socket as Socket<unknown>;
  } else {
    socket = await new Promise<Socket<unknown>>((resolve, reject) => {
      Bun.connect({
        hostname: node.address.host,
        port,
        socket: {
          open: resolve,
          data: (_s, chunk) => sink.data(chunk),
          drain: () => sink.drain(),
          close: () => sink.close(),
          connectError: (_s, err) =>
            reject(new P2prcError("E_NODE_UNREACHABLE", `${node.address.host}:${port}: ${err.message}`)),
        },
      }).catch(reject);
    });
  }
  const pump = (async () => {
    for await (const chunk of io.input) {
      for (let off = 0; off < chunk.length; ) {
        const n = socket.write(chunk.subarray(off));
        if (n < 0) return;
        off += n;
        if (off < chunk.length) await new Promise<void>((r) => (drainWaiter = r));
      }
    }
    socket.end();
  })();
  await Promise.race([done, pump.then(() => done)]);
}

/**
 * `p2prc forward <node> <port> [--local <port>]`: a loopback listener whose every connection is a
 * stream to port `port` on the relayed node's machine (a port it mapped with `p2prc --mp`, or a
 * container's published port of yours). A direct node needs none: its port is reached at its address.
 */
export async function forwardPort(
  options: NodeOptions,
  ref: string,
  port: number,
  local: { host?: string; port?: number } = {},
): Promise<RelayForwarder & { node: NodeRoute }> {
  const { openRelayForwarder } = await p2p();
  const { ctx, node } = await routeTo(options, ref);
  if (!node.relay)
    throw new P2prcError(
      "E_INVALID",
      `node ${node.name ?? node.id.slice(0, 12)} is reached directly: connect to ${node.address.host}:${port}`,
    );
  const fwd = await openRelayForwarder({
    relay: node.relay,
    target: node.id,
    identity: ctx.identity,
    port,
    listenHost: local.host,
    listenPort: local.port,
    logger: ctx.logger.withTag("relay"),
  });
  return Object.assign(fwd, { node });
}
