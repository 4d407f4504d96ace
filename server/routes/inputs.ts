import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { P2prcError } from "../../core/index.ts";
import type { InputCache } from "../batch/cache.ts";
import type { AuthEnv } from "../http/auth.ts";
import { spoolBody } from "../http/body.ts";
import { type CallerResolver, requireCaller } from "../http/caller.ts";
import { parseJson, parseValue } from "../http/errors.ts";
import { DigestSchema, InputsCheckSchema } from "../types.ts";

export interface InputRoutesOptions {
  cache: InputCache;
  resolveCaller: CallerResolver;
  maxJsonBytes: number;
  maxUploadBytes: number;
  /** Where an upload is spooled when no auth middleware did it (the node's data dir). */
  spoolDir: string;
}

/**
 * /v1/inputs: the node's content-addressed cache of batch inputs. A client asks which digests it lacks
 * (`POST /check`), uploads only those (`PUT /:digest`, checked against the digest on arrival), and reads
 * the node's counters (`GET /stats`).
 */
export function inputRoutes(o: InputRoutesOptions) {
  const json = bodyLimit({
    maxSize: o.maxJsonBytes,
    onError: () => {
      throw new P2prcError("E_INVALID", `body: larger than ${o.maxJsonBytes} bytes`, { field: "body" });
    },
  });
  return new Hono<AuthEnv>()
    .get("/stats", (c) => {
      requireCaller(c, o.resolveCaller);
      return c.json(o.cache.stats());
    })
    .post("/check", json, async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const body = await parseJson(c, InputsCheckSchema);
      return c.json({ missing: o.cache.missing(caller.id, body.digests) });
    })
    .put("/:digest", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const digest = parseValue("digest", DigestSchema, c.req.param("digest"));
      // spooled to a file (by the auth middleware, which checked its signed hash, or here) while hashed
      const given = c.get("upload");
      const spooled = given ?? (await spoolBody(c.req.raw, o.spoolDir, o.maxUploadBytes));
      try {
        const r = await o.cache.add(caller.id, digest, spooled);
        return c.json({ digest, bytes: r.bytes, stored: r.stored }, 201);
      } finally {
        if (!given) await spooled.remove();
      }
    });
}
