import { Hono } from "hono";
import { P2prcError } from "../core/index.ts";
import type { AuthEnv } from "../server/index.ts";
import { listPlugins, pluginArchive } from "./installed.ts";

/** What `GET /v1/plugins/:name` answers: the plugin's archive (base64) and its sha256. */
export interface ServedPlugin {
  name: string;
  kind: string;
  version: string | undefined;
  sha256: string;
  /** The tar (packPlugin), base64. */
  archive: string;
}

/**
 * /v1/plugins on a node: the plugins installed in its home, for members to install from it (`p2prc --pp
 * peer:<node>/<name>`). Behind the node's auth like every route: signed requests of members only. Only
 * the files are served; nothing of a plugin ever runs on the node.
 */
export function pluginRoutes(o: { root: string }) {
  const member = (c: { get(k: "caller"): unknown }) => {
    if (!c.get("caller"))
      throw new P2prcError("E_UNAUTHORIZED", "plugins: a signed request of a member only");
  };
  return new Hono<AuthEnv>()
    .get("/", (c) => {
      member(c);
      const plugins = listPlugins(o.root).flatMap((p) =>
        p.ok ? [{ name: p.name, kind: p.kind, version: p.version, description: p.description }] : [],
      );
      return c.json({ plugins });
    })
    .get("/:name", (c) => {
      member(c);
      const p = pluginArchive(o.root, c.req.param("name"));
      const served: ServedPlugin = { ...p, archive: Buffer.from(p.archive).toString("base64") };
      return c.json(served);
    });
}
