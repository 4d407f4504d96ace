// Test fixtures for in-process server tests (not part of the module's public surface, never imported by
// index.ts): the real app over an in-memory store, with an engine that fails the test if reached.
import { defaultConfig } from "../config/index.ts";
import { type Clock, memoryLogger, systemClock } from "../core/index.ts";
import type { ContainerStore } from "../store/index.ts";
import { createServerApp, type ServerAppDeps } from "./app.ts";
import { ContainerService } from "./containers.ts";
import type { ContainerEngine } from "./engine/index.ts";

/** An engine that fails the test if a route reaches it: health, an empty list and refusals must not. */
export const noEngine = new Proxy({} as ContainerEngine, {
  get: (_, name) => () => {
    throw new Error(`the engine was called (${String(name)})`);
  },
});

/** The server app of node `nodeId` named `name` over `records` (an in-memory store's), no engine behind it. */
export function engineFreeApp(o: {
  records: ContainerStore;
  nodeId: string;
  name: string;
  clock?: Clock;
  auth?: ServerAppDeps["auth"];
  resolveCaller?: ServerAppDeps["resolveCaller"];
}) {
  const deps = {
    nodeId: o.nodeId,
    config: defaultConfig(o.name),
    engine: noEngine,
    records: o.records,
    clock: o.clock ?? systemClock,
    logger: memoryLogger(),
    gpus: async () => [],
  };
  const app = createServerApp({
    ...deps,
    version: "test",
    containers: new ContainerService(deps),
    dataDir: "/nonexistent",
    auth: o.auth,
    resolveCaller: o.resolveCaller,
  });
  return app;
}
