import { Hono } from "hono";
import type { ContainerEngine } from "../engine/index.ts";
import type { AuthEnv } from "../http/auth.ts";
import { imageAllowed } from "../images.ts";
import { toP2prcSysInfo } from "../specs.ts";
import type { Specs } from "../types.ts";

export interface NodeRoutesOptions {
  /** This node's specs (server/specs.ts `cachedSpecs`: no engine call per request). */
  specs: () => Promise<Specs>;
  engine: ContainerEngine;
  nodeId: string;
  name: string;
  version: string;
  allowedImages: string[];
  /** This node's signed record (with its TLS certificate), for the identity probe. */
  selfRecord?: () => Promise<unknown>;
}

/** Public read-only routes: health, specs, images. */
export function nodeRoutes(o: NodeRoutesOptions) {
  const images = async () => {
    const all = await o.engine.listImages();
    const offered = all
      .map((i) => ({
        ...i,
        tags: i.tags.filter((t) => imageAllowed(o.allowedImages, t)),
      }))
      .filter((i) => i.tags.length > 0);
    return offered.map((i) => ({
      id: i.id,
      tags: i.tags,
      sizeBytes: i.sizeBytes,
      createdAt: new Date(i.createdAt).toISOString(),
    }));
  };
  return (
    new Hono<AuthEnv>()
      .get("/health", (c) => c.json({ ok: true, nodeId: o.nodeId, name: o.name, version: o.version }))
      // the identity probe: answers unsigned, so a client can learn whose node this is before signing,
      // and (the signed record names the certificate) check that the TLS session is that node's
      .get("/identity", async (c) =>
        c.json({
          nodeId: o.nodeId,
          name: o.name,
          version: o.version,
          ...(o.selfRecord ? { record: await o.selfRecord() } : {}),
        }),
      )
      .get("/specs", async (c) => c.json(await o.specs()))
      .get("/images", async (c) => c.json({ images: await images() }))
  );
}

/** P2PRC's route names where they map cleanly onto the new API. */
export function compatRoutes(o: NodeRoutesOptions) {
  return new Hono<AuthEnv>()
    .get("/server_info", async (c) => c.json(toP2prcSysInfo(await o.specs())))
    .get("/ShowImages", async (c) => {
      const all = await o.engine.listImages();
      const tags = all.flatMap((i) => i.tags).filter((t) => imageAllowed(o.allowedImages, t));
      return c.json({
        DockerContainer: tags.map((t) => ({ DockerContainerName: t, ContainerDescription: "" })),
      });
    });
}
