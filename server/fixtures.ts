// Test fixtures for in-process server tests (not part of the module's public surface, never imported by
// index.ts): the real app over an in-memory store, with an engine that fails the test if reached
// (engineFreeApp) or over any engine, FakeEngine for tests without Docker (testServerApp).
import { hostname, tmpdir } from "node:os";
import { type Config, defaultConfig } from "../config/index.ts";
import { type Clock, memoryLogger, systemClock } from "../core/index.ts";
import type { ContainerStore } from "../store/index.ts";
import { createServerApp, type ServerAppDeps } from "./app.ts";
import { ContainerService } from "./containers.ts";
import type { ContainerEngine } from "./engine/index.ts";
import type { CallerResolver } from "./http/caller.ts";

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

export interface TestAppOptions {
  engine: ContainerEngine;
  /** The container table (a test opens its own store). */
  records: ContainerStore;
  clock: Clock;
  nodeId?: string;
  config?: Partial<Config>;
  dataDir?: string;
  /** Who calls; default: `local`, an admin and the operator. */
  resolveCaller?: CallerResolver;
  /** Signs task replies (the node's key). */
  sign?: (text: string) => string;
  /** The node's runtime image for futures. */
  runtimeImage?: () => Promise<string>;
}

/** The app and its service over `engine`, every caller an admin; containers default to busybox with small limits. */
export function testServerApp(o: TestAppOptions) {
  const deps = {
    nodeId: o.nodeId ?? "f".repeat(64),
    config: {
      ...defaultConfig(hostname()),
      defaultImage: "p2prc-test/busybox",
      serverHost: "127.0.0.1",
      defaultMemoryMb: 64,
      defaultCpus: 0.5,
      ...o.config,
    },
    engine: o.engine,
    records: o.records,
    clock: o.clock,
    logger: memoryLogger(),
    gpus: async () => [],
    runtimeImage: o.runtimeImage,
  };
  const containers = new ContainerService(deps);
  const app = createServerApp({
    ...deps,
    version: "test",
    containers,
    dataDir: o.dataDir ?? tmpdir(),
    resolveCaller: o.resolveCaller ?? (() => ({ id: "local", admin: true, operator: true })),
    sign: o.sign,
  });
  return { app, containers };
}

/** A reply as tests read it: status, the body as text, and as JSON when it is JSON. */
export interface TestReply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies are checked field by field
  json: any;
  text: string;
}

/** One request to an app in-process: `json` is sent as JSON, `raw` as it is. */
export async function callApp(
  app: { request: (url: string, init: RequestInit) => Response | Promise<Response> },
  method: string,
  path: string,
  body: { json?: unknown; raw?: string | Uint8Array } = {},
): Promise<TestReply> {
  const init: RequestInit = { method };
  if (body.raw !== undefined) init.body = body.raw;
  else if (body.json !== undefined) {
    init.body = JSON.stringify(body.json);
    init.headers = { "content-type": "application/json" };
  }
  const res = await app.request(`http://127.0.0.1${path}`, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

/** `engine` with every call counted by method name (`calls`): what a route costs the engine. */
export function countingEngine<E extends object>(engine: E): { engine: E; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const counted = new Proxy(engine, {
    get(target, name, receiver) {
      const v = Reflect.get(target, name, receiver);
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        calls.set(String(name), (calls.get(String(name)) ?? 0) + 1);
        return v.apply(target, args);
      };
    },
  });
  return { engine: counted, calls };
}
