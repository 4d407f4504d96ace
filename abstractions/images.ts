import type { PushedImage, PushProgress } from "../client/index.ts";
import { type Clock, type Identity, type NodeRef, P2prcError, PeerClient } from "../core/index.ts";
import type { ClusterBook, PeerTable, PeerTransport } from "../p2p/index.ts";
import type { ImageSource, ImageSources, PushedImageView } from "../server/index.ts";
import { withClient } from "./client.ts";
import { client, p2p, server } from "./lazy.ts";
import { init, type NodeOptions } from "./node.ts";

export type { PushedImage, PushedImageView, PushProgress };

/** Members asked at once whether they have an image (the closest first). */
const PROBED_MEMBERS = 8;

export interface PushImageCallOptions {
  onProgress?: (p: PushProgress) => void;
  signal?: AbortSignal;
}

/**
 * `p2prc image push <node> <image>`: the image from this machine's engine (`docker save`), streamed to
 * the node, which checks its digest and size before loading it. Nothing is held whole in memory on
 * either side; a push cut off leaves nothing on the node, so it can simply be run again.
 *
 * @example
 *   const pushed = await pushImage({}, "alpha", "team/app:1", { onProgress: (p) => console.log(p.bytes) });
 */
export async function pushImage(
  options: NodeOptions,
  node: string,
  image: string,
  o: PushImageCallOptions = {},
): Promise<PushedImage> {
  const [c, { createDockerEngine, normalizeImageRef }] = await Promise.all([client(), server()]);
  const ctx = init(options);
  const engine = createDockerEngine({ host: ctx.dockerHost, timeoutMs: ctx.config.engineTimeoutMs });
  const want = normalizeImageRef(image);
  const local = (await engine.listImages()).find((i) => i.tags.some((t) => normalizeImageRef(t) === want));
  if (!local)
    throw new P2prcError("E_NOT_FOUND", `image ${image} is not in this machine's engine`, {
      field: "image",
      hint: "build or pull it here first (docker images lists what is here)",
    });
  const archive = await engine.saveImage(want);
  try {
    return await withClient(options, (deps) =>
      c.pushImage(deps, node, want, archive, { sizeHint: local.sizeBytes, ...o }),
    );
  } finally {
    await archive.cancel().catch(() => undefined);
  }
}

/** `p2prc image ls <node>`: the images members pushed to the node, each with its pusher. */
export function listImages(options: NodeOptions, node: string): Promise<PushedImageView[]> {
  return withClient(options, async (deps) => (await client()).listPushedImages(deps, node));
}

/** `p2prc image rm <node> <image>`: removes an image you pushed (a node's admin: any pushed image). */
export function removeImage(options: NodeOptions, node: string, image: string): Promise<PushedImageView> {
  return withClient(options, async (deps) => (await client()).removePushedImage(deps, node, image));
}

/**
 * Where a serving node looks for an image no registry has: the live members in its IP table that list it
 * (GET /v1/images), the caller's own node first when it serves, then by latency. Relayed members are
 * reached through their relay like any other call.
 */
export async function memberImageSources(o: {
  identity: Identity;
  clock: Clock;
  table: PeerTable;
  clusters: Pick<ClusterBook, "isMember">;
  base: PeerTransport;
}): Promise<{ sources: ImageSources; close: () => Promise<void> }> {
  const [{ relayFromRecords, relayTransport, relayedByRecords }, { normalizeImageRef }] = await Promise.all([
    p2p(),
    server(),
  ]);
  const record = (id: string) => o.table.record(id)?.record;
  const transport = relayTransport({
    base: o.base,
    identity: o.identity,
    relayOf: relayFromRecords(record),
    relayed: relayedByRecords(record),
    certOf: (id) => record(id)?.cert,
  });
  const peer = new PeerClient({ identity: o.identity, clock: o.clock, transport, timeoutMs: 5000 });
  const sources: ImageSources = async (ref, callerId) => {
    const want = normalizeImageRef(ref);
    const candidates = o.table
      .views()
      .filter((v) => !v.self && v.state === "alive" && v.address && v.port && o.clusters.isMember(v.id))
      .sort(
        (a, b) =>
          Number(b.id === callerId) - Number(a.id === callerId) ||
          (a.latencyMs ?? Number.MAX_SAFE_INTEGER) - (b.latencyMs ?? Number.MAX_SAFE_INTEGER),
      )
      .slice(0, PROBED_MEMBERS);
    const found = await Promise.all(
      candidates.map(async (v): Promise<ImageSource | undefined> => {
        const node: NodeRef = {
          address: { host: v.address as string, port: v.port as number },
          id: v.id,
          tls: v.tls,
          cert: record(v.id)?.cert,
        };
        const listed = await peer
          .json<{ images: { id: string; tags: string[]; sizeBytes: number }[] }>(node, "/v1/images")
          .catch(() => undefined);
        const has = listed?.images.find((i) => i.tags.some((t) => normalizeImageRef(t) === want));
        if (!has) return undefined;
        return {
          from: v.id,
          id: has.id,
          sizeBytes: has.sizeBytes,
          open: async () => {
            const res = await peer.request(node, `/v1/images/archive?image=${encodeURIComponent(want)}`, {
              timeoutMs: 2_147_483_647,
            });
            if (res.headers.get("x-p2prc-image-id") !== has.id)
              throw new P2prcError("E_CONFLICT", `${v.id.slice(0, 12)}'s ${want} changed meanwhile`);
            return res.body ?? new ReadableStream({ start: (c) => c.close() });
          },
        };
      }),
    );
    return found.filter((s): s is ImageSource => s !== undefined);
  };
  return { sources, close: () => transport.close() };
}
