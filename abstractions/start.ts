import { dirname } from "node:path";
import { VERSION } from "../core/index.ts";
import type { GossipService, PeerTable, ReachService, RelayAgent, RelayServer } from "../p2p/index.ts";
import type { GpuProbe, ServerApp } from "../server/index.ts";
import { createGossip } from "./gossip.ts";
import { nvidiaSmiProbe } from "./gpu.ts";
import { memberImageSources } from "./images.ts";
import { p2p, plugins, server } from "./lazy.ts";
import { init, type NodeOptions, SERVER_URL_META } from "./node.ts";
import { startRelayAgent, startRelayRole } from "./relay.ts";
import { nodeUi } from "./ui.ts";

export interface StartOptions extends NodeOptions {
  /** GPU discovery (default: nvidia-smi when installed). */
  gpus?: GpuProbe;
  /** Reconcile / lease-expiry interval in ms (default 5000). */
  reconcileIntervalMs?: number;
}

/** An embedded, running node. */
export interface RunningNode extends AsyncDisposable {
  url: string;
  nodeId: string;
  app: ServerApp;
  /** The certificate the node serves (config `tls`): pin it to call `url` (`pinnedTls` in config/). */
  certPem: string | undefined;
  /** The relay this node serves (config `relay`), and its agent keeping it reachable (config `relays`). */
  relay: RelayServer | undefined;
  relayAgent: RelayAgent | undefined;
  /**
   * This node's gossip and IP table, read in process (benchmarks, embedding tools): what
   * `/v1/p2p/stats` and `/v1/p2p/table` answer, without a signed request. Read-only use.
   */
  gossip: Pick<GossipService, "stats" | "refreshSelf">;
  table: Pick<PeerTable, "size" | "record">;
  /** Stops gossip and serving (in-flight requests finish) and closes the state store. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts this node in-process: loads or creates config and identity, opens state.db, serves the HTTP
 * API (containers and the p2p exchange) and gossips with its peers.
 *
 * @example
 *   import { start } from "./abstractions/index.ts";
 *   const node = await start({ configDir: "/tmp/node-a", overrides: { serverPort: 9000 } });
 *   console.log(node.url, node.nodeId);
 *   await node.stop();
 */
export async function start(options: StartOptions = {}): Promise<RunningNode> {
  // the network and server modules load here, not when a CLI command imports abstractions (lazy.ts)
  const [
    { ReachService, p2pRoutes },
    { createDockerEngine, createSwarmEngine, offerOf, remoteAddress, startServerNode },
    { pluginRoutes },
  ] = await Promise.all([p2p(), server(), plugins()]);
  const ctx = init(options);
  const store = ctx.openStore();
  let relay: RelayServer | undefined;
  let closeImages: (() => Promise<void>) | undefined;
  try {
    const gpus = options.gpus ?? nvidiaSmiProbe();
    // config `engine`: one Docker engine, or a swarm manager whose machines run the containers
    const engineOptions = { host: ctx.dockerHost, timeoutMs: ctx.config.engineTimeoutMs };
    const engine =
      ctx.config.engine === "swarm"
        ? createSwarmEngine({ ...engineOptions, ports: ctx.config.swarmPorts })
        : createDockerEngine(engineOptions);
    // The record's offer: free capacity from the store and the config (over a swarm's ready machines). It
    // must work before the server has started, which returns only after its first reconcile, while it
    // already answers the identity probe (and gossip) with a signed record.
    const capacity = () => offerOf({ config: ctx.config, records: store.containers, engine, gpus });
    // reachability (p2p/reach.ts) and gossip need each other: the record carries the reach, and a
    // change of reach re-signs the record
    let reach: ReachService | undefined;
    const { table, gossip, clusters, transport, tls } = await createGossip(
      ctx,
      store,
      capacity,
      () => reach?.state(),
      () => relay?.port, // the record says where this node's relay listens
    );
    reach = new ReachService({
      identity: ctx.identity,
      mode: ctx.config.behindNat,
      table,
      clock: ctx.clock,
      logger: ctx.logger,
      vouched: () => clusters.vouchedIds(),
      selfRecord: () => gossip.selfRecord(),
      changed: () => {
        gossip.refreshSelf().catch(() => undefined);
      },
      transport,
      retryMs: Math.max(1000, ctx.config.gossipIntervalMs),
    });
    relay = await startRelayRole(ctx, clusters);
    // an image no registry has comes from a member that has it (node to node)
    const images = await memberImageSources({ ...ctx, table, clusters, base: transport });
    closeImages = images.close;
    const relayStats = relay && (() => relay?.stats);
    // the dashboard, its login links and /metrics (ui/ and prom-client load here, in a serving node only)
    const dashboard = await nodeUi(
      ctx,
      store,
      { table, gossip, clusters, reach, relay, remoteAddress },
      engine,
    );
    const server = await startServerNode({
      nodeId: ctx.identity.nodeId,
      version: VERSION,
      config: ctx.config,
      engine: dashboard.engine,
      records: store.containers,
      clock: ctx.clock,
      logger: ctx.logger,
      gpus,
      dataDir: dirname(ctx.paths.stateDb),
      reconcileIntervalMs: options.reconcileIntervalMs,
      tls,
      selfRecord: () => gossip.selfRecord(),
      sign: (text) => ctx.identity.sign(text),
      requestKey: (id) => ctx.identity.requestKey(id, "in"),
      membership: { isMember: (id) => clusters.isMember(id), isAdmin: (id) => clusters.isAdmin(id) },
      images: store.images,
      imageSources: images.sources,
      extraRoutes: [
        { path: "/v1/p2p", app: p2pRoutes({ gossip, table, clusters, remoteAddress, reach, relayStats }) },
        // the plugins installed in this node's home, for members to install (`--pp peer:<node>/<name>`)
        { path: "/v1/plugins", app: pluginRoutes({ root: ctx.paths.plugins }) },
        ...dashboard.extraRoutes,
      ],
      ownAuthRoutes: dashboard.ownAuthRoutes,
      onRequest: dashboard.onRequest,
    });
    dashboard.served(server);
    // where this node serves: the CLI hands new cluster versions to it (abstractions/cluster.ts)
    store.meta.set(SERVER_URL_META, server.url);
    gossip.start();
    reach.start();
    // through the relay a caller reaches this node's server, or a published port of a container it
    // owns (any container's, for an admin): ssh into a container on a node behind a NAT
    const agent = await startRelayAgent(
      ctx,
      server.port,
      (caller, port) =>
        store.containers
          .list()
          .some(
            (c) =>
              (c.owner === caller || clusters.isAdmin(caller)) && c.ports.some((p) => p.external === port),
          ),
      {
        table,
        reach,
        meta: store.meta,
        isMember: (id) => clusters.isMember(id),
        refresh: () => store.peers.refresh(),
      },
    );
    let stopped: Promise<void> | undefined;
    const stop = () => {
      stopped ??= (async () => {
        gossip.stop();
        await agent?.stop();
        await relay?.stop();
        const checks = reach.stop();
        dashboard.close();
        await server.stop();
        await Promise.all([gossip.idle(), checks]);
        await closeImages?.();
        transport.close();
        store.close();
      })();
      return stopped;
    };
    return {
      url: server.url,
      nodeId: ctx.identity.nodeId,
      app: server.app,
      certPem: tls?.certPem,
      relay,
      relayAgent: agent?.agent,
      gossip,
      table,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (err) {
    await relay?.stop();
    await closeImages?.();
    store.close();
    throw err;
  }
}
