// What an image archive (`docker save`) says it holds, read from its spooled file before the engine
// loads it: the tags `docker load` would set. Only the tar headers are read, and the small index files.
import { open } from "node:fs/promises";
import { P2prcError } from "../core/index.ts";

const BLOCK = 512;
/** The index files are a few KiB; a bigger one is not an engine's archive. */
const MAX_INDEX_BYTES = 1 << 20;

const refuse = (why: string) =>
  new P2prcError("E_INVALID", `body: not an image archive (${why})`, { field: "body" });

/** A NUL-terminated text field of a tar header. */
function text(h: Uint8Array, from: number, len: number): string {
  const field = h.subarray(from, from + len);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}

/** The tar entries named in `wanted` (their contents), read by walking the headers of `file`. */
async function readEntries(file: string, wanted: Set<string>): Promise<Map<string, Uint8Array>> {
  const fd = await open(file, "r");
  const found = new Map<string, Uint8Array>();
  try {
    const size = (await fd.stat()).size;
    const header = new Uint8Array(BLOCK);
    let at = 0;
    let longName: string | undefined;
    while (at + BLOCK <= size) {
      const { bytesRead } = await fd.read(header, 0, BLOCK, at);
      if (bytesRead < BLOCK) throw refuse("truncated");
      if (header.every((b) => b === 0)) break;
      const bytes = Number.parseInt(text(header, 124, 12).trim() || "0", 8);
      if (!Number.isFinite(bytes) || bytes < 0) throw refuse("bad tar header");
      const type = String.fromCharCode(header[156] ?? 0);
      const prefix = text(header, 345, 155);
      let name = longName ?? (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100));
      longName = undefined;
      name = name.replace(/^\.\//, "");
      const dataAt = at + BLOCK;
      const read = async () => {
        if (bytes > MAX_INDEX_BYTES) throw refuse(`${name} is too large`);
        const data = new Uint8Array(bytes);
        const r = await fd.read(data, 0, bytes, dataAt);
        if (r.bytesRead < bytes) throw refuse("truncated");
        return data;
      };
      if (type === "L") longName = text(await read(), 0, bytes);
      else if (type === "x") {
        const path = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(new TextDecoder().decode(await read()))?.[1];
        if (path) longName = path;
      } else if (wanted.has(name)) found.set(name, await read());
      at = dataAt + Math.ceil(bytes / BLOCK) * BLOCK;
    }
    if (at > size) throw refuse("truncated");
  } finally {
    await fd.close();
  }
  return found;
}

function json(name: string, data: Uint8Array | undefined): unknown {
  if (!data) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw refuse(`${name} is not JSON`);
  }
}

/**
 * The image names a spooled archive would tag when loaded: `manifest.json`'s RepoTags (Docker's format)
 * and `index.json`'s name annotations (OCI's). A node checks them before loading, so an archive cannot
 * re-tag an image other than the one pushed (another member's, or the node's default image).
 */
export async function archiveTags(file: string): Promise<string[]> {
  const entries = await readEntries(file, new Set(["manifest.json", "index.json"]));
  const manifest = json("manifest.json", entries.get("manifest.json"));
  const index = json("index.json", entries.get("index.json")) as
    | { manifests?: { annotations?: Record<string, string> }[] }
    | undefined;
  if (manifest === undefined && index === undefined) throw refuse("no manifest.json or index.json");
  const tags = new Set<string>();
  if (manifest !== undefined) {
    if (!Array.isArray(manifest)) throw refuse("manifest.json is not a list");
    for (const m of manifest as { RepoTags?: unknown }[]) {
      for (const t of Array.isArray(m?.RepoTags) ? m.RepoTags : []) tags.add(String(t));
    }
  }
  for (const m of index?.manifests ?? []) {
    const a = m?.annotations ?? {};
    for (const key of ["io.containerd.image.name", "org.opencontainers.image.ref.name"]) {
      const v = a[key];
      // OCI's ref.name may be a bare tag ("1.0"): only a full name retags anything
      if (typeof v === "string" && /[/:]/.test(v)) tags.add(v.replace(/^docker\.io\/(library\/)?/, ""));
    }
  }
  return [...tags];
}
