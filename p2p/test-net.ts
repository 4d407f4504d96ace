// A little in-process network for the p2p tests: each node is a GossipService behind the real p2p
// routes, and "the network" is a fetch that routes by URL. Time is a ManualClock; rounds are run by hand.
// Test support only (never imported by index.ts).
import { Hono } from "hono";
import { type Config, defaultConfig } from "../config/index.ts";
import { generateIdentity, type Identity, isP2prcError, ManualClock, memoryLogger } from "../core/index.ts";
import type { AuthEnv } from "../server/index.ts";
import { openStore, type Store } from "../store/index.ts";
import { OFFER } from "./fixtures.ts";
import { GossipService } from "./gossip.ts";
import { p2pRoutes } from "./routes.ts";
import { PeerTable } from "./table.ts";

export interface TestNode {
  name: string;
  port: number;
  url: string;
  identity: Identity;
  store: Store;
  table: PeerTable;
  gossip: GossipService;
  app: Hono<AuthEnv>;
  log: string[];
}

export type Behaviour = "up" | "down" | "hang" | "slow";

/**
 * A little network: nodes by host:port, each up, down (connection refused), hanging (never answers) or
 * slow (answers after its `delays` entry, in real time, as the exchange timeout is).
 */
export class Net {
  readonly clock = new ManualClock();
  readonly nodes = new Map<string, TestNode>();
  readonly behaviour = new Map<string, Behaviour>();
  /** How long a slow node takes to answer (ms). */
  readonly delays = new Map<string, number>();
  /** Every request made: [from node, path]. */
  readonly calls: { from: string; url: string; body?: string }[] = [];
  private nextPort = 9001;

  /** What address node `port` sees callers at (default 127.0.0.1). */
  readonly seenAs = new Map<number, string>();

  constructor(private readonly defaults: Partial<Config> = {}) {}

  add(
    name: string,
    opts: {
      identity?: Identity;
      store?: Store;
      port?: number;
      config?: Partial<Config>;
      seenAs?: string;
      /** How late the node's event loop runs (GossipDeps.lateness). */
      lateness?: () => number;
    } = {},
  ): TestNode {
    const port = opts.port ?? this.nextPort++;
    const identity = opts.identity ?? generateIdentity();
    const store = opts.store ?? openStore(":memory:");
    const config: Config = {
      ...defaultConfig(name),
      serverHost: "127.0.0.1",
      serverPort: port,
      gossipIntervalMs: 1000,
      suspectTimeoutMs: 5000,
      gossipFanout: 3,
      ...this.defaults,
      ...opts.config,
    };
    const table = new PeerTable(store.peers, identity.nodeId, this.clock);
    const log: string[] = [];
    const gossip = new GossipService({
      identity,
      peers: store.peers,
      meta: store.meta,
      table,
      config,
      clock: this.clock,
      logger: memoryLogger(log),
      offer: async () => OFFER,
      lateness: opts.lateness,
      fetch: ((input: string | URL | Request, init?: RequestInit) =>
        this.fetch(name, input, init)) as typeof fetch,
    });
    const app = new Hono<AuthEnv>();
    // the signer named in the request becomes the caller, as the real auth middleware does after checking
    app.use("*", async (c, next) => {
      const id = c.req.header("x-p2prc-node");
      if (id) c.set("caller", { id, admin: false, operator: false });
      await next();
    });
    // the real server's wire shape (server/http/errors.ts), field included: gossip reads it
    app.onError((err, c) =>
      isP2prcError(err) && err.code === "E_INVALID"
        ? c.json({ error: { code: err.code, message: err.message, field: err.field } }, 400)
        : c.json({ error: String(err) }, 500),
    );
    app.route(
      "/v1/p2p",
      p2pRoutes({ gossip, table, remoteAddress: () => this.seenAs.get(port) ?? "127.0.0.1" }),
    );
    const node: TestNode = {
      name,
      port,
      url: `http://127.0.0.1:${port}`,
      identity,
      store,
      table,
      gossip,
      app,
      log,
    };
    this.nodes.set(`127.0.0.1:${port}`, node);
    this.behaviour.set(`127.0.0.1:${port}`, "up");
    return node;
  }

  set(node: TestNode, b: Behaviour, delayMs = 0): void {
    this.behaviour.set(`127.0.0.1:${node.port}`, b);
    this.delays.set(`127.0.0.1:${node.port}`, delayMs);
  }

  /** Puts `node` at the address of `port` (another process took over the port). */
  move(node: TestNode, port: number): void {
    this.nodes.set(`127.0.0.1:${port}`, node);
    this.behaviour.set(`127.0.0.1:${port}`, "up");
  }

  private async fetch(from: string, input: string | URL | Request, init?: RequestInit): Promise<Response> {
    const url = new URL(String(input));
    this.calls.push({
      from,
      url: url.toString(),
      body: typeof init?.body === "string" ? init.body : undefined,
    });
    const b = this.behaviour.get(url.host) ?? "down";
    const node = this.nodes.get(url.host);
    if (b === "hang") {
      return new Promise((_, reject) => {
        init?.signal?.addEventListener("abort", () => reject(new Error("timed out")), { once: true });
      });
    }
    if (b === "down" || !node) throw new Error(`connect ECONNREFUSED ${url.host}`);
    if (b === "slow") {
      const ms = this.delays.get(url.host) ?? 0;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, ms);
        init?.signal?.addEventListener(
          "abort",
          () => {
            clearTimeout(timer);
            reject(new Error("timed out"));
          },
          { once: true },
        );
      });
    }
    return node.app.request(url.pathname, { method: init?.method, headers: init?.headers, body: init?.body });
  }

  /** One round on each node, in order. */
  async rounds(nodes: TestNode[], n = 1): Promise<void> {
    for (let i = 0; i < n; i++) {
      for (const node of nodes) {
        const b = this.behaviour.get(`127.0.0.1:${node.port}`);
        if (b !== "up" && b !== "slow") continue;
        await node.gossip.round();
      }
    }
  }
}

export const liveIds = (n: TestNode) =>
  n.table
    .views()
    .map((v) => v.id)
    .sort();
export const idsOf = (...nodes: TestNode[]) => nodes.map((n) => n.identity.nodeId).sort();
