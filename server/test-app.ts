// A node's HTTP API in-process for tests, over any engine (FakeEngine for tests without Docker): the
// ContainerService and the app wired as the composition root wires them, every caller an admin.
// Test support only (never imported by index.ts).
import { hostname, tmpdir } from "node:os";
import { type Config, defaultConfig } from "../config/index.ts";
import { type Clock, memoryLogger } from "../core/index.ts";
import type { ContainerStore } from "../store/index.ts";
import { createServerApp } from "./app.ts";
import { ContainerService } from "./containers.ts";
import type { ContainerEngine } from "./engine/index.ts";

export interface TestAppOptions {
  engine: ContainerEngine;
  /** The container table (a test opens its own store). */
  records: ContainerStore;
  clock: Clock;
  nodeId?: string;
  config?: Partial<Config>;
  dataDir?: string;
}

/** The app and its service; containers default to busybox with small limits. */
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
  };
  const containers = new ContainerService(deps);
  const app = createServerApp({
    ...deps,
    version: "test",
    containers,
    dataDir: o.dataDir ?? tmpdir(),
    resolveCaller: () => ({ id: "local", admin: true, operator: true }),
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
