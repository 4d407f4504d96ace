import { join } from "node:path";
import { Hono, type Schema } from "hono";
import type { Config } from "../config/index.ts";
import { type Clock, DEFAULT_PORT, type Logger, systemClock, tryParseAddress } from "../core/index.ts";
import type { ContainerStore } from "../store/index.ts";
import type { ContainerService } from "./containers.ts";
import type { ContainerEngine } from "./engine/index.ts";
import { ExecSessions } from "./exec-sessions.ts";
import { type AuthEnv, type AuthOptions, authenticate, signedCaller } from "./http/auth.ts";
import type { CallerResolver } from "./http/caller.ts";
import { errorResponse } from "./http/errors.ts";
import type { ImageService } from "./image-service.ts";
import { containerRoutes } from "./routes/containers.ts";
import { execOpenRoutes, execSessionRoutes } from "./routes/exec.ts";
import { imageRoutes } from "./routes/images.ts";
import { compatRoutes, nodeRoutes } from "./routes/node.ts";
import type { GpuProbe } from "./types.ts";

export interface ServerAppDeps {
  nodeId: string;
  version: string;
  config: Config;
  engine: ContainerEngine;
  /** The container table: the slice of the store the server owns. */
  records: ContainerStore;
  logger: Logger;
  gpus: GpuProbe;
  containers: ContainerService;
  dataDir: string;
  /** Signed requests and membership (the real node). Without it only `resolveCaller` decides (tests). */
  auth?: AuthOptions;
  /** Who a request comes from; default: the signer the auth middleware verified. */
  resolveCaller?: CallerResolver;
  maxJsonBytes?: number;
  maxUploadBytes?: number;
  /** Sub-apps other modules serve on this node (the composition root passes p2p's `/v1/p2p`). */
  extraRoutes?: ExtraRoutes;
  /** This node's signed record, served by the identity probe. */
  selfRecord?: () => Promise<unknown>;
  /** Interactive execs (`p2prc exec -it`); the node passes its own, to close them when it stops. */
  execSessions?: ExecSessions;
  /** Default: the system clock. */
  clock?: Clock;
  /** Pushed images and images for members (`/v1/images/push|pushed|archive`); not served without it. */
  images?: ImageService | undefined;
}

/** The node's HTTP API as a Hono app (test it in-process with `app.request`). */
export function createServerApp(deps: ServerAppDeps) {
  const log = deps.logger.withTag("http");
  const resolveCaller = deps.resolveCaller ?? (deps.auth ? signedCaller : () => undefined);
  const advertised = tryParseAddress(deps.config.advertiseAddress, DEFAULT_PORT)?.host ?? "";
  const nodeOpts = {
    specs: {
      nodeId: deps.nodeId,
      config: deps.config,
      engine: deps.engine,
      records: deps.records,
      gpus: deps.gpus,
      dataDir: deps.dataDir,
    },
    engine: deps.engine,
    nodeId: deps.nodeId,
    name: deps.config.machineName,
    version: deps.version,
    allowedImages: deps.config.allowedImages,
    selfRecord: deps.selfRecord,
  };
  const exec = {
    service: deps.containers,
    sessions: deps.execSessions ?? new ExecSessions({ clock: deps.clock ?? systemClock }),
    resolveCaller,
  };
  const v1 = new Hono<AuthEnv>()
    .route("/", nodeRoutes(nodeOpts))
    .route(
      "/containers",
      containerRoutes({
        service: deps.containers,
        resolveCaller,
        publicHost: (requestHost) => advertised || requestHost,
        maxJsonBytes: deps.maxJsonBytes ?? 1024 * 1024,
        maxUploadBytes: deps.maxUploadBytes ?? 256 * 1024 * 1024,
        spoolDir: join(deps.dataDir, "uploads"),
      }),
    )
    .route("/containers", execOpenRoutes(exec))
    .route("/exec", execSessionRoutes(exec));
  const app = new Hono<AuthEnv>();
  if (deps.auth) app.use("*", authenticate(deps.auth));
  // Chained, so the result's type carries every route (ServerApp, for `hc`); `app` is the same object.
  const routed = app.route("/v1", v1).route("/", compatRoutes(nodeOpts));
  if (deps.images) {
    const maxJsonBytes = deps.maxJsonBytes ?? 1024 * 1024;
    app.route("/v1/images", imageRoutes({ service: deps.images, resolveCaller, maxJsonBytes }));
  }
  for (const extra of deps.extraRoutes ?? []) app.route(extra.path, extra.app);
  app.notFound((c) =>
    c.json(
      { error: { code: "E_NOT_FOUND", message: `no route ${c.req.method} ${new URL(c.req.url).pathname}` } },
      404,
    ),
  );
  app.onError((err, c) =>
    errorResponse(c, err, (e) =>
      log.error(`${c.req.method} ${c.req.path}: ${(e as Error)?.stack ?? String(e)}`),
    ),
  );
  return routed;
}

/**
 * Sub-apps another module serves on this node, behind the same auth middleware (so typed with its
 * variables). Their routes stay out of ServerApp: the composition root picks them at run time.
 */
export type ExtraRoutes = { path: string; app: Hono<AuthEnv, Schema, string> }[];

/**
 * The app's type, for hono's typed `hc` client: `hc<ServerApp>(url)` types every `/v1` and compat
 * route's request and reply (server/app-types.test.ts keeps it so).
 */
export type ServerApp = ReturnType<typeof createServerApp>;
