import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { P2prcError, zod } from "../../core/index.ts";
import type { AuthEnv } from "../http/auth.ts";
import { type CallerResolver, requireCaller } from "../http/caller.ts";
import { parseJson, parseValue } from "../http/errors.ts";
import type { ImageService } from "../image-service.ts";

const z = zod();
const ImageParam = z.string().check(z.minLength(1), z.maxLength(512));
const UploadParam = z.string().check(z.regex(/^[0-9a-f]{24}$/, "an upload id"));
const SizeParam = z.string().check(z.regex(/^\d{1,15}$/, "a number of bytes"));
/** The second request of a push: the archive's digest and size, as its pusher computed them. */
const CommitPushSchema = z.strictObject({
  sha256: z.string().check(z.regex(/^[0-9a-fA-F]{64}$/, "64 hex characters")),
  bytes: z.int().check(z.minimum(0)),
});

export interface ImageRoutesOptions {
  service: ImageService;
  resolveCaller: CallerResolver;
  maxJsonBytes: number;
}

/**
 * /v1/images beyond the list (GET /v1/images, in node.ts): pushes (archive, then its signed digest),
 * pushed images (list, remove) and the archive of an image for a member node.
 */
export function imageRoutes(o: ImageRoutesOptions) {
  const { service } = o;
  const json = bodyLimit({
    maxSize: o.maxJsonBytes,
    onError: () => {
      throw new P2prcError("E_INVALID", `body: larger than ${o.maxJsonBytes} bytes`, { field: "body" });
    },
  });
  const image = (raw: string | undefined) => parseValue("image", ImageParam, raw);
  return new Hono<AuthEnv>()
    .post("/push", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const size = c.req.query("size");
      const hint = size === undefined ? undefined : Number(parseValue("size", SizeParam, size));
      return c.json(await service.receive(caller, image(c.req.query("image")), c.req.raw, hint));
    })
    .post("/push/:upload", json, async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      const upload = parseValue("upload", UploadParam, c.req.param("upload"));
      return c.json(await service.commit(caller, upload, await parseJson(c, CommitPushSchema)), 201);
    })
    .get("/pushed", (c) => {
      requireCaller(c, o.resolveCaller);
      return c.json({ images: service.list() });
    })
    .delete("/pushed", async (c) => {
      const caller = requireCaller(c, o.resolveCaller);
      return c.json({ removed: await service.remove(caller, image(c.req.query("image"))) });
    })
    .get("/archive", async (c) => {
      requireCaller(c, o.resolveCaller);
      const { id, stream } = await service.archive(image(c.req.query("image")));
      return new Response(stream, {
        headers: { "content-type": "application/x-tar", "x-p2prc-image-id": id },
      });
    });
}
