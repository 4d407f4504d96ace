import { createHash } from "node:crypto";
import { pacedCollector } from "../core/index.ts";
import type { PushedImageView, PushResult } from "../server/index.ts";
import { type ClientDeps, identify } from "./containers.ts";

/** How far a push is: bytes sent so far, of about `totalHint` (the image's size as the engine says). */
export interface PushProgress {
  bytes: number;
  totalHint?: number | undefined;
  /** ms since the push began. */
  elapsedMs: number;
}

export interface PushImageOptions {
  /** About how big the archive is (the local engine's image size): the node refuses an over-quota push at once. */
  sizeHint?: number | undefined;
  onProgress?: ((p: PushProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
  /** Time for elapsedMs (default Date.now). */
  now?: () => number;
}

/** What `p2prc image push` prints. */
export interface PushedImage extends PushResult {
  node: { id: string; url: string };
  /** Bytes a second, the whole push (send and load). */
  rate: number;
  elapsedMs: number;
}

/**
 * `archive`, counted and hashed as the node reads it: memory stays at one chunk whatever its size (the
 * chunks' garbage collected as it goes: core/memory.ts).
 */
function metered(
  archive: ReadableStream<Uint8Array>,
  progress: (bytes: number) => void,
): { stream: ReadableStream<Uint8Array>; done: () => { sha256: string; bytes: number } } {
  const hash = createHash("sha256");
  const collect = pacedCollector();
  let bytes = 0;
  const stream = archive.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, c) {
        hash.update(chunk);
        bytes += chunk.length;
        collect(chunk.length);
        progress(bytes);
        c.enqueue(chunk);
      },
    }),
  );
  return { stream, done: () => ({ sha256: hash.digest("hex"), bytes }) };
}

/**
 * Pushes an image archive (the local engine's `docker save`) to a node: streamed as it is read, hashed on
 * the way, then its SHA-256 and size are sent signed and the node loads it only when they match what it
 * received. A push cut off leaves nothing on the node: run it again.
 */
export async function pushImage(
  deps: ClientDeps,
  nodeRef: string,
  image: string,
  archive: ReadableStream<Uint8Array>,
  o: PushImageOptions = {},
): Promise<PushedImage> {
  const now = o.now ?? Date.now;
  const started = now();
  const { target, client, id } = await identify(deps, nodeRef);
  const m = metered(archive, (bytes) =>
    o.onProgress?.({ bytes, totalHint: o.sizeHint, elapsedMs: now() - started }),
  );
  const { upload } = await client.pushArchive(image, m.stream, { sizeHint: o.sizeHint, signal: o.signal });
  const result = await client.commitPush(upload, m.done());
  const elapsedMs = Math.max(1, now() - started);
  return {
    ...result,
    node: { id, url: target.url },
    elapsedMs,
    rate: Math.round((result.bytes * 1000) / elapsedMs),
  };
}

/** `p2prc image ls <node>`: the images members pushed there, with their pushers. */
export async function listPushedImages(deps: ClientDeps, nodeRef: string): Promise<PushedImageView[]> {
  return (await identify(deps, nodeRef)).client.pushedImages();
}

/** `p2prc image rm <node> <image>`: one the caller pushed (an admin of the node: any pushed image). */
export async function removePushedImage(
  deps: ClientDeps,
  nodeRef: string,
  image: string,
): Promise<PushedImageView> {
  return (await identify(deps, nodeRef)).client.removePushedImage(image);
}
