import { join } from "node:path";
import { Hono, type MiddlewareHandler, type Schema } from "hono";
import { matchedRoutes } from "hono/route";
import type { Config } from "../config/index.ts";
import { type Clock, DEFAULT_PORT, type Logger, systemClock, tryParseAddress } from "../core/index.ts";
import type { ContainerStore } from "../store/index.ts";
import type { AgentPool } from "./batch/agent-pool.ts";
import { InputCache } from "./batch/cache.ts";
import { TaskService } from "./batch/tasks.ts";
import type { ContainerService } from "./containers.ts";
import type { ContainerEngine } from "./engine/index.ts";
import { ExecSessions } from "./exec-sessions.ts";
import { FutureRuntimes } from "./future-runtimes.ts";
import { type AuthEnv, type AuthOptions, authenticate, signedCaller } from "./http/auth.ts";
import type { CallerResolver } from "./http/caller.ts";
import { errorResponse } from "./http/errors.ts";
import type { ImageService } from "./image-service.ts";
import { containerRoutes, futureStatsRoutes, taskStatsRoutes } from "./routes/containers.ts";
import { execOpenRoutes, execSessionRoutes } from "./routes/exec.ts";
import { imageRoutes } from "./routes/images.ts";
import { inputRoutes } from "./routes/inputs.ts";
import { compatRoutes, nodeRoutes } from "./routes/node.ts";
import { cachedSpecs } from "./specs.ts";
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
  /**
   * Sub-apps that authenticate their callers themselves (the dashboard's session cookie, the metrics
   * scrape token): mounted outside the signed-request middleware, so each must refuse on its own.
   */
  ownAuthRoutes?: ExtraRoutes;
  /** Told of every answered request (metrics): its route pattern, never its ids. */
  onRequest?: (r: AnsweredRequest) => void;
  /** Interactive execs (`p2prc exec -it`); the node passes its own, to close them when it stops. */
  execSessions?: ExecSessions;
  /** The long-lived future runtimes (the node closes them when it stops); default: the app's own. */
  futureRuntimes?: FutureRuntimes;
  /** The batch tasks' agents (the node closes them when it stops); default: the app's own. */
  taskAgents?: AgentPool;
  /** Default: the system clock. */
  clock?: Clock;
  /** The batch input cache (default: one in `<dataDir>/inputs` bounded by config `inputCacheMb`). */
  inputs?: InputCache;
  /** Pushed images and images for members (`/v1/images/push|pushed|archive`); not served without it. */
  images?: ImageService | undefined;
  /** Signs with the node's key: batch task replies carry a signature (futures check it). */
  sign?: ((text: string) => string) | undefined;
}

/** One answered request, for metrics: `route` is the matched pattern (`/v1/containers/:id`). */
export interface AnsweredRequest {
  method: string;
  route: string;
  status: number;
  seconds: number;
}

/** The node's HTTP API as a Hono app (test it in-process with `app.request`). */
export function createServerApp(deps: ServerAppDeps) {
  const log = deps.logger.withTag("http");
  const resolveCaller = deps.resolveCaller ?? (deps.auth ? signedCaller : () => undefined);
  const advertised = tryParseAddress(deps.config.advertiseAddress, DEFAULT_PORT)?.host ?? "";
  const nodeOpts = {
    specs: cachedSpecs(deps, deps.clock ?? systemClock),
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
  const inputs =
    deps.inputs ??
    new InputCache({
      dir: join(deps.dataDir, "inputs"),
      limitBytes: deps.config.inputCacheMb * 1024 * 1024,
      logger: deps.logger,
    });
  const tasks = new TaskService({
    containers: deps.containers,
    engine: deps.engine,
    cache: inputs,
    clock: deps.clock ?? systemClock,
    agents: deps.taskAgents,
  });
  const runtimes =
    deps.futureRuntimes ??
    new FutureRuntimes({
      containers: deps.containers,
      engine: deps.engine,
      clock: deps.clock ?? systemClock,
    });
  const maxJsonBytes = deps.maxJsonBytes ?? 1024 * 1024;
  const maxUploadBytes = deps.maxUploadBytes ?? 256 * 1024 * 1024;
  const spoolDir = join(deps.dataDir, "uploads");
  const v1 = new Hono<AuthEnv>()
    .route("/", nodeRoutes(nodeOpts))
    .route(
      "/containers",
      containerRoutes({
        service: deps.containers,
        tasks,
        runtimes,
        sign: deps.sign,
        resolveCaller,
        publicHost: (requestHost) => advertised || requestHost,
        maxJsonBytes,
        maxUploadBytes,
        spoolDir,
      }),
    )
    .route("/containers", execOpenRoutes(exec))
    .route("/exec", execSessionRoutes(exec))
    .route("/inputs", inputRoutes({ cache: inputs, resolveCaller, maxJsonBytes, maxUploadBytes, spoolDir }))
    .route("/futures", futureStatsRoutes({ runtimes, resolveCaller }))
    .route("/tasks", taskStatsRoutes({ tasks, resolveCaller }));
  const app = new Hono<AuthEnv>();
  const onRequest = deps.onRequest;
  if (onRequest) app.use("*", observeRequests(onRequest));
  if (deps.auth) app.use("*", skipping(deps.ownAuthRoutes ?? [], authenticate(deps.auth)));
  // Chained, so the result's type carries every route (ServerApp, for `hc`); `app` is the same object.
  const routed = app.route("/v1", v1).route("/", compatRoutes(nodeOpts));
  if (deps.images) {
    const maxJsonBytes = deps.maxJsonBytes ?? 1024 * 1024;
    app.route("/v1/images", imageRoutes({ service: deps.images, resolveCaller, maxJsonBytes }));
  }
  for (const extra of [...(deps.extraRoutes ?? []), ...(deps.ownAuthRoutes ?? [])])
    app.route(extra.path, extra.app);
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

/** `mw` on every path but those under `routes` (which authenticate their callers themselves). */
function skipping(routes: ExtraRoutes, mw: MiddlewareHandler<AuthEnv>): MiddlewareHandler<AuthEnv> {
  const under = (path: string) => routes.some((r) => path === r.path || path.startsWith(`${r.path}/`));
  return (c, next) => (under(c.req.path) ? next() : mw(c, next));
}

/** Times every request and names its route by the pattern it matched ("unmatched" for a 404 of no route). */
function observeRequests(onRequest: (r: AnsweredRequest) => void): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const start = performance.now();
    try {
      await next();
    } finally {
      // the handler that answered, or, when a middleware answered (a 401), the route it stood before
      const route = matchedRoutes(c)
        .slice(c.req.routeIndex)
        .find((r) => r.method !== "ALL")?.path;
      onRequest({
        method: c.req.method,
        route: route ?? "unmatched",
        status: c.res.status,
        seconds: (performance.now() - start) / 1000,
      });
    }
  };
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
