import { hostname } from "node:os";
import type { Hono } from "hono";
import { type Clock, type Config, type Logger, P2prcError, type Store } from "../config/index.ts";
import { createServerApp, type ServerApp } from "./app.ts";
import { ContainerService } from "./containers.ts";
import type { ContainerEngine } from "./engine/index.ts";
import type { CallerResolver } from "./http/caller.ts";
import { Reconciler } from "./reconcile.ts";
import { capacityOf } from "./specs.ts";
import type { GpuProbe } from "./types.ts";

export interface ServerNodeDeps {
  nodeId: string;
  version: string;
  config: Config;
  engine: ContainerEngine;
  store: Store;
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
  extraRoutes?: { path: string; app: Hono }[];
  /** Serve TLS with this certificate and key (config `tls`); plain HTTP without. */
  tls?: { certPem: string; keyPem: string };
  /** This node's signed record, served by the identity probe (it names the TLS certificate). */
  selfRecord?: () => Promise<unknown>;
  /** How often store and engine are reconciled and expired leases removed (default 5 s). */
  reconcileIntervalMs?: number;
}

/** A running server node. `stop()` is idempotent and graceful. */
export interface ServerNode extends AsyncDisposable {
  url: string;
  port: number;
  app: ServerApp;
  containers: ContainerService;
  reconciler: Reconciler;
  /** Free capacity under this node's limits (cheap: no engine call). */
  capacity(): Promise<ReturnType<typeof capacityOf>>;
  stop(): Promise<void>;
}

/** Starts the HTTP API and the reconciler. The caller owns (and closes) the store. */
export async function startServerNode(deps: ServerNodeDeps): Promise<ServerNode> {
  const log = deps.logger.withTag("server");
  const containers = new ContainerService(deps);
  const sshHost = deps.config.advertiseAddress.replace(/:\d+$/, "").replace(/^\[|\]$/g, "") || hostname();
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
        maxBodyBytes: 256 * 1024 * 1024,
        ratePerMinute: 6000,
      };
  if (deps.config.openNetwork) {
    log.warn("openNetwork is on: any node with a signed request may use this node (see Docs/Security.md)");
  }
  const app = createServerApp({ ...deps, containers, auth });

  try {
    await reconciler.run();
  } catch (err) {
    log.warn(`first reconcile failed (${(err as Error).message}); serving anyway, will retry`);
  }
  reconciler.start(deps.reconcileIntervalMs ?? 5000);

  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: deps.config.serverHost,
      port: deps.config.serverPort,
      idleTimeout: 120,
      ...(deps.tls ? { tls: { cert: deps.tls.certPem, key: deps.tls.keyPem } } : {}),
      fetch: (req, srv) => app.fetch(req, { server: srv }),
    });
  } catch (err) {
    reconciler.stop();
    const code = (err as { code?: string }).code;
    const what = code === "EADDRINUSE" ? "is already in use" : `cannot be opened (${(err as Error).message})`;
    throw new P2prcError("E_CONFIG", `${deps.config.serverHost}:${deps.config.serverPort} ${what}`, {
      field: "serverPort",
      cause: err,
      hint: "choose another port with --port or P2PRC_SERVER_PORT",
    });
  }
  const port = server.port ?? deps.config.serverPort;
  const host =
    deps.config.serverHost === "0.0.0.0" || deps.config.serverHost === "::"
      ? "127.0.0.1"
      : deps.config.serverHost;
  const scheme = deps.tls ? "https" : "http";
  const url = `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  log.info(
    `node ${deps.nodeId} (${deps.config.machineName}) listening on ${scheme}://${deps.config.serverHost}:${port}${deps.tls ? "" : " (plain HTTP: tls is off)"}`,
  );

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      log.info("stopping: finishing in-flight requests ...");
      reconciler.stop();
      const graceful = server.stop(false);
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, 10_000).unref());
      await Promise.race([graceful, deadline]);
      server.stop(true);
      await reconciler.idle();
      log.info("stopped");
    })();
    return stopping;
  };
  const capacity = async () => capacityOf(deps, (await deps.gpus().catch(() => [])).length);
  return { url, port, app, containers, reconciler, capacity, stop, [Symbol.asyncDispose]: stop };
}
