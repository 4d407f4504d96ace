/** server: runs other nodes' tasks in isolated containers behind an HTTP API. */

export type { AnsweredRequest, ExtraRoutes, ServerApp, ServerAppDeps } from "./app.ts";
export { createServerApp } from "./app.ts";
export type { Caller } from "./caller.ts";
export type { ContainerServiceDeps, CreateResult } from "./containers.ts";
export { ContainerService, LABELS } from "./containers.ts";
export type {
  BatchView,
  ClusterInfo,
  DashboardOptions,
  DashboardSource,
  MetricsRouteOptions,
  MetricsSource,
  NodeMetrics,
  SelfView,
  UiAuthOptions,
  UiSession,
} from "./dashboard/index.ts";
export type {
  ContainerEngine,
  ContainerInfo,
  ContainerSpec,
  ContainerState,
  DockerEngineOptions,
  EngineInfo,
  ExecOptions,
  ExecResult,
  ExecSession,
  ExecSessionOptions,
  ImageDetails,
  ImageInfo,
  NetworkInfo,
} from "./engine/index.ts";
export { createDockerEngine, createSwarmEngine, LABEL_PREFIX, MANAGED_LABEL } from "./engine/index.ts";
export type { AuthEnv, AuthOptions, AuthVariables } from "./http/auth.ts";
export { authenticate, PUBLIC_ROUTES } from "./http/auth.ts";
export type { CallerResolver } from "./http/caller.ts";
export { remoteAddress } from "./http/caller.ts";
export type {
  ImageServiceDeps,
  ImageSource,
  ImageSources,
  PushedImageView,
  PushResult,
} from "./image-service.ts";
export { ImageService } from "./image-service.ts";
export { normalizeImageRef } from "./images.ts";
export type { ServerNode, ServerNodeDeps } from "./node.ts";
export { startServerNode } from "./node.ts";
export { freePorts } from "./ports.ts";
export type { ReconcileReport } from "./reconcile.ts";
export { Reconciler } from "./reconcile.ts";
export { capacityOf, collectSpecs, offerOf } from "./specs.ts";
export type { TarEntry } from "./tar.ts";
export { createTar } from "./tar.ts";
export type {
  ContainerView,
  CreateContainerRequest,
  ExecRequest,
  ExecSessionRequest,
  GpuInfo,
  GpuProbe,
  LeaseRequest,
  Specs,
  StopRequest,
} from "./types.ts";
export { ContainerPathSchema, CreateContainerSchema, ExecSchema } from "./types.ts";

/**
 * The dashboard and /metrics (server/dashboard: hono's html pages, prom-client), loaded only by a node
 * that serves them: never with a command that does not serve (cli/actions.test.ts).
 */
export const loadDashboard = () => import("./dashboard/index.ts");
