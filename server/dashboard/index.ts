/**
 * server/dashboard: what an operator looks at — the dashboard a node serves under `/ui` (one-time login links, a session
 * cookie, live pages over server-sent events) and its Prometheus metrics under `/metrics`. Loaded only by
 * a node that serves (server/index.ts's loadDashboard, called from abstractions/lazy.ts).
 */

export type { MetricsRouteOptions } from "./access.ts";
export { isLoopback, loginUrl, metricsRoutes, tokenRoutes } from "./access.ts";
export type { UiAuthOptions, UiSession } from "./auth.ts";
export { UiAuth } from "./auth.ts";
export type { MetricsSource } from "./metrics.ts";
export { NodeMetrics } from "./metrics.ts";
export type { DashboardOptions } from "./routes.ts";
export { dashboardRoutes } from "./routes.ts";
export type { BatchView, ClusterInfo, DashboardSource, SelfView } from "./types.ts";
