import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { P2prcError, type z } from "../core/index.ts";
import type { AuthEnv } from "../server/index.ts";
import type { ClusterBook } from "./cluster.ts";
import type { GossipService } from "./gossip.ts";
import type { ReachService } from "./reach.ts";
import type { RelayStats } from "./relay/index.ts";
import type { PeerTable } from "./table.ts";
import { p2pSchemas } from "./types.ts";

export interface P2pRoutesOptions {
  gossip: GossipService;
  table: PeerTable;
  /** The cluster documents held (for `GET /clusters`: those the caller is a member of). */
  clusters?: ClusterBook;
  /** The caller's address as the HTTP server saw it (observed address for the caller). */
  remoteAddress: (c: Context<AuthEnv>) => string | undefined;
  /** Reachability (dial-backs for members, and this node's own state); absent: the routes answer 404. */
  reach?: ReachService;
  maxBodyBytes?: number;
  /** This node's relay counters, when it serves as a relay (in `GET /stats` as `relay`). */
  relayStats?: () => RelayStats | undefined;
}

async function body<S extends z.ZodMiniType>(c: Context<AuthEnv>, schema: S): Promise<z.infer<S>> {
  let raw: unknown;
  try {
    raw = JSON.parse(await c.req.text());
  } catch {
    throw new P2prcError("E_INVALID", "body: not valid JSON", { field: "body" });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = ["body", ...(issue?.path.map(String) ?? [])].join(".");
    throw new P2prcError("E_INVALID", `${field}: ${issue?.message ?? "invalid"}`, { field });
  }
  return parsed.data;
}

/** /v1/p2p: the gossip exchange and the table. Records are accepted only when their signature verifies. */
export function p2pRoutes(o: P2pRoutesOptions) {
  const limit = bodyLimit({
    maxSize: o.maxBodyBytes ?? 8 * 1024 * 1024,
    onError: () => {
      throw new P2prcError("E_INVALID", "body: too large", { field: "body" });
    },
  });
  return new Hono<AuthEnv>()
    .post("/exchange", limit, async (c) =>
      c.json(
        await o.gossip.handleExchange(
          await body(c, p2pSchemas().ExchangeRequestSchema),
          o.remoteAddress(c),
          c.get("caller")?.id,
        ),
      ),
    )
    .post("/sync", limit, async (c) =>
      c.json(await o.gossip.handleSync(await body(c, p2pSchemas().SyncRequestSchema), c.get("caller")?.id)),
    )
    .post("/cluster", limit, async (c) => {
      let raw: unknown;
      try {
        raw = JSON.parse(await c.req.text());
      } catch {
        throw new P2prcError("E_INVALID", "body: not valid JSON", { field: "body" });
      }
      return c.json(o.gossip.handleCluster(raw));
    })
    .get("/clusters", (c) => {
      const caller = c.get("caller")?.id;
      return c.json({ clusters: caller && o.clusters ? o.clusters.visibleTo(caller) : [] });
    })
    .post("/dialback", limit, async (c) => {
      const caller = c.get("caller")?.id;
      if (!o.reach || !caller) throw new P2prcError("E_NOT_FOUND", "no dial-back here");
      let raw: unknown;
      try {
        raw = JSON.parse(await c.req.text());
      } catch {
        throw new P2prcError("E_INVALID", "body: not valid JSON", { field: "body" });
      }
      return c.json(await o.reach.handleDialback(caller, raw));
    })
    .get("/reach", (c) => {
      if (!o.reach) throw new P2prcError("E_NOT_FOUND", "no reachability here");
      return c.json(o.reach.report());
    })
    .get("/table", (c) => c.json({ nodes: o.table.views() }))
    .get("/stats", (c) => {
      const relay = o.relayStats?.();
      return c.json(relay ? { ...o.gossip.stats, relay } : o.gossip.stats);
    });
}
