import { createHash, randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { P2prcError } from "../../core/index.ts";

/** A request body written to a file while its SHA-256 was computed (uploads: bounded memory). */
export interface SpooledBody {
  file: string;
  bytes: number;
  sha256: string;
  /** Deletes the file (idempotent). */
  remove(): Promise<void>;
}

const tooLarge = (limit: number) =>
  new P2prcError("E_TOO_LARGE", `body: larger than ${limit} bytes`, { field: "body" });

/** 413 at once when the declared `content-length` is over `limit` (nothing is read). */
export function checkDeclaredLength(req: Request, limit: number): void {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw tooLarge(limit);
}

/**
 * The body's chunks as they arrive, refusing (413) as soon as they pass `limit`, whether a
 * `content-length` was sent or the body is chunked.
 */
async function* boundedChunks(req: Request, limit: number): AsyncGenerator<Uint8Array> {
  if (!req.body) return;
  const reader = req.body.getReader();
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    size += value.length;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    yield value;
  }
}

/** Reads the whole body into memory; 413 at once over `limit` (declared or as it arrives). */
export async function readBounded(req: Request, limit: number): Promise<Uint8Array> {
  checkDeclaredLength(req, limit);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of boundedChunks(req, limit)) {
    chunks.push(chunk);
    size += chunk.length;
  }
  if (chunks.length === 1 && chunks[0]) return chunks[0];
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Streams the body into a new file under `dir`, hashing it on the way, so memory stays at one chunk
 * whatever the size; 413 (and the file removed) as soon as it passes `limit`.
 */
export async function spoolBody(req: Request, dir: string, limit: number): Promise<SpooledBody> {
  checkDeclaredLength(req, limit);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `upload-${randomBytes(8).toString("hex")}.tar`);
  const remove = () => rm(file, { force: true });
  const hash = createHash("sha256");
  // created exclusively and private first; then written through Bun's native file sink (buffered,
  // flushed as it fills), which keeps memory flat under a fast sender
  await (await open(file, "wx", 0o600)).close();
  const sink = Bun.file(file).writer({ highWaterMark: 1 << 20 });
  let bytes = 0;
  try {
    for await (const chunk of boundedChunks(req, limit)) {
      bytes += chunk.length;
      hash.update(chunk);
      const pending = sink.write(chunk);
      if (pending instanceof Promise) await pending;
    }
    await sink.end();
  } catch (err) {
    await Promise.resolve(sink.end()).catch(() => {});
    await remove();
    throw err;
  }
  return { file, bytes, sha256: hash.digest("hex"), remove };
}
