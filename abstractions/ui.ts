// The dashboard and /metrics wired to a serving node's parts (start.ts), and `p2prc ui`'s login link.
import { existsSync } from "node:fs";
import type { Context } from "hono";
import { isP2prcError, NODE_ID_RE, P2prcError, VERSION } from "../core/index.ts";
import type { ClusterBook, GossipService, PeerTable, ReachService, RelayServer } from "../p2p/index.ts";
import type {
  AnsweredRequest,
  BatchView,
  ClusterInfo,
  ContainerEngine,
  DashboardSource,
  ExtraRoutes,
  NodeMetrics,
  ServerNode,
} from "../server/index.ts";
import type { Store } from "../store/index.ts";
import { writeClusterFile } from "./cluster.ts";
import { ui } from "./lazy.ts";
import { init, type NodeContext, type NodeOptions } from "./node.ts";
import { localNode, nodeFetch } from "./transport.ts";

/** The parts of a starting node the dashboard and the metrics read. */
export interface UiParts {
  table: PeerTable;
  gossip: GossipService;
  clusters: ClusterBook;
  reach: ReachService;
  relay: RelayServer | undefined;
  remoteAddress: (c: Context) => string | undefined;
}

/** What start.ts hands the server, and what it calls once the server runs. */
export interface NodeUi {
  /** The engine with its errors and start times counted. */
  engine: ContainerEngine;
  /** `/ui` and `/metrics`: they authenticate their callers themselves. */
  ownAuthRoutes: ExtraRoutes;
  /** `/v1/ui`: the signed route `p2prc ui` asks for a login link. */
  extraRoutes: ExtraRoutes;
  onRequest: (r: AnsweredRequest) => void;
  /** The server is up: the dashboard reads its containers, and the log gets a first login link. */
  served(server: ServerNode): void;
  /** Ends the dashboard's live streams, so that open pages do not hold the server's graceful stop. */
  close(): void;
}

/** Most batches the dashboard shows and the metrics count. */
const BATCHES = 50;

/** The job's image and command, from the job text (JSON or YAML). */
function jobSummary(text: string): { image: string; command: string } {
  try {
    const job = (text.trimStart().startsWith("{") ? JSON.parse(text) : Bun.YAML.parse(text)) as {
      image?: unknown;
      command?: unknown;
    };
    return {
      image: typeof job.image === "string" ? job.image : "",
      command: Array.isArray(job.command) ? job.command.map(String).join(" ") : "",
    };
  } catch {
    return { image: "", command: "" };
  }
}

/** The client's batches as the dashboard shows them (read from the store, where the batch runner keeps them). */
export function readBatches(store: Store, limit = BATCHES): BatchView[] {
  return store.client.recentBatches(limit).map((b) => {
    // the Mandelbrot demo writes its tiles to `<png>.tiles/` and the PNG once every tile is back
    const png = b.outDir.endsWith(".tiles") ? b.outDir.slice(0, -".tiles".length) : undefined;
    return {
      id: b.id,
      outDir: b.outDir,
      createdAt: b.createdAt,
      ...jobSummary(b.job),
      tasks: store.client.batchTasks(b.id),
      imagePath: png && existsSync(png) ? png : undefined,
    };
  });
}

/** Counts engine failures (by operation) and the time from create to started, around any engine. */
function instrumentEngine(engine: ContainerEngine, metrics: NodeMetrics, now: () => number): ContainerEngine {
  const created = new Map<string, number>();
  const engineFault = (err: unknown) =>
    isP2prcError(err) && (err.code === "E_ENGINE" || err.code === "E_ENGINE_UNAVAILABLE");
  return new Proxy(engine, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      const operation = String(prop);
      return async (...args: unknown[]) => {
        const began = now();
        try {
          const result = await value.apply(target, args);
          if (operation === "create" && typeof result === "string") created.set(result, began);
          if (operation === "start") {
            const t = created.get(String(args[0]));
            created.delete(String(args[0]));
            if (t !== undefined) metrics.containerStarted((now() - t) / 1000);
          }
          return result;
        } catch (err) {
          if (engineFault(err)) metrics.engineError(operation);
          if (operation === "create" || operation === "start") created.delete(String(args[0]));
          throw err;
        }
      };
    },
  });
}

/** Builds the dashboard, the login links and the metrics of a node that is starting (start.ts). */
export async function nodeUi(
  ctx: NodeContext,
  store: Store,
  parts: UiParts,
  engine: ContainerEngine,
): Promise<NodeUi> {
  const { dashboardRoutes, loginUrl, metricsRoutes, NodeMetrics, tokenRoutes, UiAuth } = await ui();
  const selfId = ctx.identity.nodeId;
  const operator = { id: selfId, admin: true, operator: true };
  const startedAt = ctx.clock.now();
  let server: ServerNode | undefined;
  const serving = () => {
    if (!server)
      throw new P2prcError("E_ENGINE_UNAVAILABLE", "the node is still starting", { retryable: true });
    return server;
  };
  const metrics = new NodeMetrics({
    version: VERSION,
    peerStates: () => store.peers.list().flatMap((r) => (r.id === selfId ? [] : [r.state])),
    // with the engine down a scrape still answers: the node's records, in state "unknown"
    containerStates: async () =>
      server
        ? await server.containers.list(operator).then(
            (list) => list.map((c) => c.state),
            () => store.containers.list().map(() => "unknown"),
          )
        : [],
    batchTaskStates: () => readBatches(store, 1000).flatMap((b) => b.tasks.map((t) => t.state)),
    gossip: () => parts.gossip.stats,
    relay: parts.relay && (() => parts.relay?.stats),
  });
  const counted = instrumentEngine(engine, metrics, () => performance.now());
  const clusterInfo = (): ClusterInfo[] =>
    parts.clusters.active().map(({ cluster: c }) => ({
      name: c.name,
      host: c.host,
      version: c.version,
      hosting: c.host === selfId,
      members: c.members.map((m) => ({ id: m.id, label: m.label ?? "", role: m.role ?? "member" })),
    }));
  const source: DashboardSource = {
    self: async () => {
      const r = parts.reach.state();
      const engineState = await counted.ping().then(
        (info) => ({
          ok: true,
          detail: `Docker ${info.version} (${info.os}/${info.arch}), ${info.containers} containers`,
        }),
        (err: unknown) => ({ ok: false, detail: (err as Error).message }),
      );
      return {
        id: selfId,
        name: ctx.config.machineName,
        version: VERSION,
        address: server?.url ?? "",
        reach: r.reach === "relay" ? "relay" : "direct",
        relays: r.relays ?? [],
        engine: engineState,
        startedAt,
      };
    },
    peers: () => parts.table.views(),
    containers: async () => (server ? server.containers.list(operator) : []),
    logs: (id, tail, signal) => serving().containers.logs(id, operator, { follow: true, tail }, signal),
    removeContainer: (id) => serving().containers.remove(id, operator),
    renewLease: (id, ttl) => serving().containers.renew(id, operator, ttl),
    batches: () => readBatches(store),
    clusters: clusterInfo,
    addMember: (cluster, id, role, label) => {
      if (!NODE_ID_RE.test(id)) {
        throw new P2prcError("E_INVALID", `"${id.slice(0, 80)}" is not a node id (64 hex characters)`, {
          field: "id",
        });
      }
      if (label.length > 64)
        throw new P2prcError("E_INVALID", "label: at most 64 characters", { field: "label" });
      const signed = parts.clusters.addMember(ctx.identity, cluster, { id, label, role });
      writeClusterFile(ctx, signed);
    },
    removeMember: (cluster, id) => {
      writeClusterFile(ctx, parts.clusters.removeMember(ctx.identity, cluster, id));
    },
  };
  const auth = new UiAuth({ clock: ctx.clock });
  const closing = new AbortController();
  const log = ctx.logger.withTag("ui");
  return {
    engine: counted,
    ownAuthRoutes: [
      {
        path: "/ui",
        app: dashboardRoutes({
          source,
          auth,
          clock: ctx.clock,
          logger: ctx.logger,
          nodeId: selfId,
          nodeName: ctx.config.machineName,
          closing: closing.signal,
        }),
      },
      {
        path: "/metrics",
        app: metricsRoutes({ metrics, token: ctx.config.metricsToken, remoteAddress: parts.remoteAddress }),
      },
    ],
    extraRoutes: [{ path: "/v1/ui", app: tokenRoutes(auth) }],
    onRequest: (r) => metrics.request(r),
    close: () => closing.abort(),
    served: (s) => {
      server = s;
      log.info(
        `dashboard: ${loginUrl(s.url, auth.mintToken().token)} (one use, 10 minutes; p2prc ui prints another)`,
      );
    },
  };
}

/** `p2prc ui`: a one-time login link to this machine's running node's dashboard. */
export async function uiLink(options: NodeOptions = {}): Promise<{ url: string; expiresAt: number }> {
  const ctx = init(options);
  const store = ctx.openStore();
  try {
    const res = await nodeFetch(ctx, store, localNode(ctx, store), "/v1/ui/token", {
      method: "POST",
      json: {},
      timeoutMs: 5000,
    });
    return (await res.json()) as { url: string; expiresAt: number };
  } catch (err) {
    if (isP2prcError(err) && err.code === "E_NODE_UNREACHABLE") {
      throw new P2prcError("E_NODE_UNREACHABLE", `ui: this machine's node does not answer (${err.message})`, {
        cause: err,
        hint: "start it with p2prc --as-server (the dashboard is served by the running node)",
      });
    }
    throw err;
  } finally {
    store.close();
  }
}
