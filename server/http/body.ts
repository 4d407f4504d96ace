import { randomBytes } from "node:crypto";
import { mkdirSync, statSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { P2prcError, sha256OfFile } from "../../core/index.ts";

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

/** How often a spool's file size is checked against its limit while the body is written. */
const WATCH_MS = 20;

/**
 * Writes the body into a new file under `dir`, then hashes the file; 413 (and the file removed) as soon
 * as it passes `limit`. Bun writes the body to the file natively, so no chunk reaches JavaScript: memory
 * stays flat whatever the size (a body read chunk by chunk in JavaScript left ~40 MB of garbage behind
 * per transfer, growing with its size until the collector caught up). The limit is watched on the
 * file's size every WATCH_MS: the refusal closes the request, which ends the write. The file is hashed
 * only once written: Bun may size it ahead (a declared length) and fill it out of order, so a reader
 * following it could hash bytes not yet written.
 */
export async function spoolBody(req: Request, dir: string, limit: number): Promise<SpooledBody> {
  checkDeclaredLength(req, limit);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `upload-${randomBytes(8).toString("hex")}.tar`);
  const remove = () => rm(file, { force: true });
  // created exclusively and private first: Bun.write keeps the file's mode
  await (await open(file, "wx", 0o600)).close();
  const writing = Bun.write(file, req);
  let watch: ReturnType<typeof setInterval> | undefined;
  const over = new Promise<never>((_, reject) => {
    watch = setInterval(() => {
      try {
        if (statSync(file).size > limit) reject(tooLarge(limit));
      } catch {
        // removed: the write's own outcome says why
      }
    }, WATCH_MS);
  });
  try {
    const bytes = await Promise.race([writing, over]);
    clearInterval(watch);
    if (bytes > limit) throw tooLarge(limit);
    return { file, bytes, sha256: (await sha256OfFile(file)).sha256, remove };
  } catch (err) {
    // a write still running (the limit passed) goes on into the removed file until its request ends
    writing.then(remove, remove);
    await remove();
    throw err;
  } finally {
    clearInterval(watch);
  }
}
