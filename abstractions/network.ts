import { type Address, formatHost, parseAddress, readNodeId, systemClock } from "../core/index.ts";
import type { GossipRefusal, PeerView } from "../p2p/index.ts";
import { openStore, type Store } from "../store/index.ts";
import { createGossip } from "./gossip.ts";
import { p2p, server } from "./lazy.ts";
import { init, loadConfig, type NodeOptions } from "./node.ts";

async function withStore<T>(
  options: NodeOptions,
  fn: (store: Store, nodeId: string) => Promise<T> | T,
): Promise<T> {
  const ctx = init(options);
  const store = ctx.openStore();
  try {
    return await fn(store, ctx.identity.nodeId);
  } finally {
    store.close();
  }
}

/** `--ls`: the IP table — live nodes, this one included, sorted by latency. Reads only. */
export async function viewIPTable(options: NodeOptions = {}): Promise<PeerView[]> {
  const { PeerTable } = await p2p();
  const loaded = loadConfig(options);
  // The id from the public key file: no key parsing, and nothing is created by a read.
  const nodeId = readNodeId(loaded.paths.publicKey) ?? "";
  const store = openStore(loaded.paths.stateDb);
  try {
    return new PeerTable(store.peers, nodeId, options.clock ?? systemClock).views();
  } finally {
    store.close();
  }
}

/** `--as host:port` (P2PRC's AddServer): remembers a node to contact; the table is never wiped. */
export async function addServer(options: NodeOptions, address: string): Promise<Address> {
  const a = parseAddress(address, "add-server");
  await withStore(options, (store) => store.peers.addSeed(a.host, a.port, false, Date.now()));
  return a;
}

/** `--arn --ip H -p P` (P2PRC's AddRootNode): adds a root node without wiping the table. */
export async function addRootNode(
  options: NodeOptions,
  host: string,
  port: string | number,
): Promise<Address> {
  const a = parseAddress(`${formatHost(host)}:${port}`, "ip/port");
  await withStore(options, (store) => store.peers.addSeed(a.host, a.port, true, Date.now()));
  return a;
}

/** `--amd text` (P2PRC's AddMetaData): this node's metadata; a running node spreads it next round. */
export async function addCustomInformation(options: NodeOptions, text: string): Promise<void> {
  const { setNodeMetadata } = await p2p();
  await withStore(options, (store) => setNodeMetadata(store.meta, text));
}

export interface UpdateIPTableOptions {
  /** Called with the peers and seeds that refused this node (403: not a member there), when any did. */
  onRefused?: (refused: GossipRefusal[]) => void;
}

/**
 * `--us` (P2PRC's UpdateServerList): one exchange now with every known node and seed, from this
 * process, then the table. Peers that refused this node are passed to `onRefused`.
 */
export async function updateIPTable(
  options: NodeOptions = {},
  o: UpdateIPTableOptions = {},
): Promise<PeerView[]> {
  const { capacityOf } = await server();
  const ctx = init(options);
  const store = ctx.openStore();
  try {
    // a client offers what its own config and store say (it runs nothing unless it is also a server)
    const { table, gossip } = await createGossip(ctx, store, async () =>
      capacityOf({ config: ctx.config, records: store.containers }, 0),
    );
    gossip.addBootstrapSeeds();
    await gossip.round(true);
    if (gossip.refused.length > 0) o.onRefused?.(gossip.refused);
    return table.views();
  } finally {
    store.close();
  }
}
