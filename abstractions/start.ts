import { dirname } from "node:path";
import type { GpuProbe, ServerApp } from "../server/index.ts";
import { nvidiaSmiProbe } from "./gpu.ts";
import { init, type NodeOptions } from "./node.ts";
import { VERSION } from "../config/index.ts";

export interface StartOptions extends NodeOptions {
  /** GPU discovery (default: nvidia-smi when installed). */
  gpus?: GpuProbe;
  /** Reconcile / lease-expiry interval in ms (default 5000). */
  reconcileIntervalMs?: number;
}

/** An embedded, running node. */
export interface RunningNode extends AsyncDisposable {
  url: string;
  nodeId: string;
  app: ServerApp;
  /** Stops serving (in-flight requests finish) and closes the state store. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts this node's server in-process: loads or creates config and identity, opens state.db,
 * connects the engine lazily, serves the HTTP API.
 *
 * @example
 *   import { start } from "./abstractions/index.ts";
 *   const node = await start({ configDir: "/tmp/node-a", overrides: { serverPort: 9000 } });
 *   console.log(node.url, node.nodeId);
 *   await node.stop();
 */
export async function start(options: StartOptions = {}): Promise<RunningNode> {
  // The server (hono, its schemas, the engine client) loads here, not when a CLI command imports abstractions.
  const { createDockerEngine, startServerNode } = await import("../server/index.ts");
  const ctx = init(options);
  const store = ctx.openStore();
  try {
    const server = await startServerNode({
      nodeId: ctx.identity.nodeId,
      version: VERSION,
      config: ctx.config,
      engine: createDockerEngine({ host: ctx.dockerHost }),
      store,
      clock: ctx.clock,
      logger: ctx.logger,
      gpus: options.gpus ?? nvidiaSmiProbe(),
      dataDir: dirname(ctx.paths.stateDb),
      reconcileIntervalMs: options.reconcileIntervalMs,
    });
    let stopped: Promise<void> | undefined;
    const stop = () => {
      stopped ??= server.stop().finally(() => store.close());
      return stopped;
    };
    return {
      url: server.url,
      nodeId: ctx.identity.nodeId,
      app: server.app,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (err) {
    store.close();
    throw err;
  }
}
