import { rmSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Config } from "../config/index.ts";
import {
  type Clock,
  DEFAULT_PORT,
  formatAddress,
  type Logger,
  nodeUrl,
  P2prcError,
  tryParseAddress,
} from "../core/index.ts";
import type { ContainerStore, ImageStore } from "../store/index.ts";
import { type AnsweredRequest, createServerApp, type ExtraRoutes, type ServerApp } from "./app.ts";
import { AgentPool } from "./batch/agent-pool.ts";
import { ContainerService } from "./containers.ts";
import type { ContainerEngine } from "./engine/index.ts";
import { ExecSessions } from "./exec-sessions.ts";
import { FutureRuntimes } from "./future-runtimes.ts";
import type { CallerResolver } from "./http/caller.ts";
import { ImageService, type ImageSources } from "./image-service.ts";
import { Reconciler } from "./reconcile.ts";
import { RuntimeImage } from "./runtime-image.ts";
import { type capacityOf, offerOf } from "./specs.ts";
import type { GpuProbe } from "./types.ts";

export interface ServerNodeDeps {
  nodeId: string;
  version: string;
  config: Config;
  engine: ContainerEngine;
  /** The container table: the slice of the store the server owns. */
  records: ContainerStore;
  clock: Clock;
  logger: Logger;
  gpus: GpuProbe;
  dataDir: string;
  resolveCaller?: CallerResolver;
  /**
   * Who may use this node and who manages every container (the composition root passes the cluster
   * book). Default: this node and config `trusted` (or anyone signed when `openNetwork`).
   */
  membership?: { isMember: (nodeId: string) => boolean; isAdmin: (nodeId: string) => boolean };
  /** Sub-apps other modules serve on this node. */
  extraRoutes?: ExtraRoutes;
  /** Sub-apps that authenticate their callers themselves (the dashboard, /metrics). */
  ownAuthRoutes?: ExtraRoutes;
  /** Told of every answered request (metrics). */
  onRequest?: (r: AnsweredRequest) => void;
  /** Serve TLS with this certificate and key (config `tls`); plain HTTP without. */
  tls?: { certPem: string; keyPem: string };
  /** This node's signed record, served by the identity probe (it names the TLS certificate). */
  selfRecord?: () => Promise<unknown>;
  /** Signs with the node's key (batch task replies; futures check them). */
  sign?: (text: string) => string;
  /**
   * The key of another node's requests to this one (Identity.requestKey(id, "in")): with it the node takes
   * request MACs besides signatures (server/http/auth.ts).
   */
  requestKey?: (nodeId: string) => Buffer;
  /** How often store and engine are reconciled and expired leases removed (default 5 s). */
  reconcileIntervalMs?: number;
  /** The pushed-images table: with it the node takes pushes and shares images with members. */
  images?: ImageStore;
  /** Members that have an image no registry has, closest first (node to node). */
  imageSources?: ImageSources;
}

/** Largest body held in memory (JSON and gossip routes; p2p's own limit is 8 MiB). */
const MAX_BODY_BYTES = 8 * 1024 * 1024;
/** Largest upload (`PUT /v1/containers/:id/files`), spooled to the data dir, never held in memory. */
const MAX_UPLOAD_BYTES = 256 * 1024 * 1024;

/**
 * A non-member's 403 is held this long (server/http/auth.ts `refusalDelayMs`): a flood of refused
 * requests is paced by its connections, not by how fast the node can refuse (issue 12).
 */
const REFUSAL_DELAY_MS = 200;

/** A running server node. `stop()` is idempotent and graceful. */
export interface ServerNode extends AsyncDisposable {
  url: string;
  port: number;
  app: ServerApp;
  containers: ContainerService;
  reconciler: Reconciler;
  /** Free capacity under this node's limits (cheap: no engine call, or a swarm's cached machine list). */
  capacity(): Promise<ReturnType<typeof capacityOf>>;
  stop(): Promise<void>;
}

/** Starts the HTTP API and the reconciler. The caller owns (and closes) the store. */
export async function startServerNode(deps: ServerNodeDeps): Promise<ServerNode> {
  const log = deps.logger.withTag("server");
  const images = deps.images
    ? new ImageService({ ...deps, images: deps.images, sources: deps.imageSources })
    : undefined;
  const runtime = new RuntimeImage({ engine: deps.engine, logger: deps.logger, workDir: deps.dataDir });
  const containers = new ContainerService({
    ...deps,
    runtimeImage: () => runtime.ensure(),
    fetchImage: images && ((image, caller) => images.fetchFromMembers(image, caller)),
  });
  const sshHost = tryParseAddress(deps.config.advertiseAddress, DEFAULT_PORT)?.host || hostname();
  const reconciler = new Reconciler({
    ...deps,
    sshHost,
    creating: () => containers.creating(),
    maxDiskMb: deps.config.maxDiskMbPerContainer,
    removed: (rec, reason) => containers.noteRemoved(rec, reason),
  });
  // Without an injected resolver (tests), every request but health/identity must be signed by a member.
  const auth = deps.resolveCaller
    ? undefined
    : {
        selfId: deps.nodeId,
        isMember:
          deps.membership?.isMember ??
          ((id: string) => id === deps.nodeId || deps.config.openNetwork || deps.config.trusted.includes(id)),
        isAdmin: deps.membership?.isAdmin ?? ((id: string) => id === deps.nodeId),
        skewMs: deps.config.requestSkewSeconds * 1000,
        clock: deps.clock,
        logger: deps.logger,
        maxBodyBytes: MAX_BODY_BYTES,
        maxUploadBytes: MAX_UPLOAD_BYTES,
        spoolDir: join(deps.dataDir, "uploads"),
        startedAt: deps.clock.now(),
        ratePerMinute: deps.config.memberRequestsPerMinute,
        refusalDelayMs: REFUSAL_DELAY_MS,
        ...(deps.requestKey ? { requestKey: deps.requestKey } : {}),
      };
  if (deps.config.openNetwork) {
    log.warn("openNetwork is on: any node with a signed request may use this node (see Docs/Security.md)");
  }
  if (auth) rmSync(auth.spoolDir, { recursive: true, force: true }); // uploads cut off by a crash
  const execSessions = new ExecSessions({ clock: deps.clock });
  const futureRuntimes = new FutureRuntimes({ containers, engine: deps.engine, clock: deps.clock });
  const taskAgents = new AgentPool({ engine: deps.engine, clock: deps.clock });
  const app = createServerApp({
    ...deps,
    containers,
    images,
    auth,
    maxUploadBytes: MAX_UPLOAD_BYTES,
    execSessions,
    futureRuntimes,
    taskAgents,
  });

  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: deps.config.serverHost,
      port: deps.config.serverPort,
      // longer than peers keep an idle connection to it (p2p SESSION_IDLE_MS, 160 s: Bun's timer may add
      // 8 s), so a peer never sends on a connection this server is closing
      idleTimeout: 180,
      // The auth middleware bounds every body itself (413 with a JSON error, uploads spooled to disk);
      // Bun's own limit (128 MiB by default) would drop a larger upload with no status at all.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      ...(deps.tls ? { tls: { cert: deps.tls.certPem, key: deps.tls.keyPem } } : {}),
      fetch: (req, srv) => app.fetch(req, { server: srv }),
    });
  } catch (err) {
    reconciler.stop();
    const code = (err as { code?: string }).code;
    const what = code === "EADDRINUSE" ? "is already in use" : `cannot be opened (${(err as Error).message})`;
    throw new P2prcError(
      "E_CONFIG",
      `${formatAddress({ host: deps.config.serverHost, port: deps.config.serverPort })} ${what}`,
      {
        field: "serverPort",
        cause: err,
        hint: "choose another port with --port or P2PRC_SERVER_PORT",
      },
    );
  }
  // The first reconcile runs once the port is open, not before: an engine that is down or hangs must not
  // keep the node from answering /v1/health (engine routes answer 503 meanwhile). Start returns after
  // that pass, or after engineTimeoutMs when the engine is slow, so a caller of start() (and a test)
  // normally sees the engine already reconciled. Creating and reconciling at once is safe: the
  // reconciler leaves names being created alone.
  const first = reconciler.run();
  containers.waitFor(first);
  let firstTimer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    first.catch((err) => {
      log.warn(`first reconcile failed (${(err as Error).message}); serving anyway, will retry`);
    }),
    new Promise((resolve) => {
      firstTimer = setTimeout(resolve, deps.config.engineTimeoutMs);
    }),
  ]);
  clearTimeout(firstTimer);
  reconciler.start(deps.reconcileIntervalMs ?? 5000);
  const port = server.port ?? deps.config.serverPort;
  const host =
    deps.config.serverHost === "0.0.0.0" || deps.config.serverHost === "::"
      ? "127.0.0.1"
      : deps.config.serverHost;
  const url = nodeUrl({ host, port }, !!deps.tls);
  log.info(
    `node ${deps.nodeId} (${deps.config.machineName}) listening on ${nodeUrl({ host: deps.config.serverHost, port }, !!deps.tls)}${deps.tls ? "" : " (plain HTTP: tls is off)"}`,
  );

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      log.info("stopping: finishing in-flight requests ...");
      reconciler.stop();
      execSessions.closeAll(); // an interactive session would hold the stop for its whole grace
      futureRuntimes.closeAll();
      taskAgents.closeAll(); // idle task agents' connections to the engine
      // stop(false) lets requests in flight finish (streamed answers included), but it also waits on
      // connections with no request in flight that Bun does not count as idle (an open TLS connection
      // with nothing sent yet, a half-sent header), up to their 180 s idle timeout. So: wait only while a
      // request is pending, then close the rest at once; 10 s at most (a followed log never ends).
      const graceful = server.stop(false);
      let waiting = true;
      const drained = (async () => {
        while (waiting && server.pendingRequests > 0) await Bun.sleep(20);
      })();
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, 10_000).unref());
      await Promise.race([graceful, drained, deadline]);
      waiting = false;
      server.stop(true);
      await images?.close();
      await containers.settled();
      await reconciler.idle();
      await reconciler
        .releaseNetworks()
        .catch((err) => log.warn(`networks not released: ${(err as Error).message}`));
      log.info("stopped");
    })();
    return stopping;
  };
  const capacity = () => offerOf(deps);
  return { url, port, app, containers, reconciler, capacity, stop, [Symbol.asyncDispose]: stop };
}
