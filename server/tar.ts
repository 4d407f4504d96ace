// Tar archives the server writes into containers itself: small ones built with nanotar (authorized_keys),
// and streamed ones (batch task directories with inputs from the node's cache). Uploads from clients are
// passed to the engine untouched.
import { createTar as nanoCreateTar } from "nanotar";
import { P2prcError } from "../core/index.ts";

/** One entry: a directory (no content) or a regular file. */
export interface TarEntry {
  path: string;
  mode: number;
  content?: string | Uint8Array;
  uid?: number;
  gid?: number;
}

/** Builds a tar archive of the entries, in order (root-owned unless uid/gid say otherwise). */
export function createTar(entries: TarEntry[]): Uint8Array {
  return nanoCreateTar(
    entries.map((e) => ({
      name: e.content === undefined && !e.path.endsWith("/") ? `${e.path}/` : e.path,
      data: typeof e.content === "string" ? new TextEncoder().encode(e.content) : e.content,
      attrs: { mode: e.mode.toString(8), uid: e.uid ?? 0, gid: e.gid ?? 0, user: "root", group: "root" },
    })),
  );
}

/** One entry of a streamed archive: a directory, a file read from disk as it is sent, or a hard link. */
export type StreamEntry =
  | { kind: "dir"; path: string; mode: number }
  | { kind: "file"; path: string; mode: number; source: string; size: number }
  | { kind: "link"; path: string; mode: number; target: string };

const BLOCK = 512;

/** A ustar header (root-owned, mtime 0); `path` is split into prefix and name when over 100 bytes. */
export function ustarHeader(e: {
  path: string;
  mode: number;
  type: "0" | "1" | "5";
  size?: number;
  linkname?: string;
}): Uint8Array {
  const h = Buffer.alloc(BLOCK);
  let name = e.path;
  let prefix = "";
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf("/", name.length - 2);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  if (Buffer.byteLength(name) > 100 || Buffer.byteLength(prefix) > 155 || /\0/.test(e.path))
    throw new P2prcError("E_INVALID", `tar: path ${e.path.slice(0, 200)} is too long`, { field: "path" });
  const linkname = e.linkname ?? "";
  if (Buffer.byteLength(linkname) > 100)
    throw new P2prcError("E_INVALID", `tar: link target ${linkname.slice(0, 200)} is too long`);
  const octal = (n: number, width: number) => `${n.toString(8).padStart(width - 1, "0")}\0`;
  h.write(name, 0);
  h.write(octal(e.mode & 0o7777, 8), 100);
  h.write(octal(0, 8), 108); // uid
  h.write(octal(0, 8), 116); // gid
  h.write(octal(e.size ?? 0, 12), 124);
  h.write(octal(0, 12), 136); // mtime
  h.write("        ", 148); // checksum field counts as blanks
  h.write(e.type, 156);
  h.write(linkname, 157);
  h.write("ustar\0", 257);
  h.write("00", 263);
  h.write("root", 265);
  h.write("root", 297);
  h.write(prefix, 345);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  return h;
}

/**
 * A tar archive of `entries` as a stream: a file's content is read from disk while the archive is sent,
 * so memory stays at one chunk whatever its size. A file that is not `size` bytes long fails the stream.
 */
export function tarStream(entries: StreamEntry[]): ReadableStream<Uint8Array> {
  async function* blocks(): AsyncGenerator<Uint8Array> {
    for (const e of entries) {
      if (e.kind === "dir")
        yield ustarHeader({ path: `${e.path.replace(/\/$/, "")}/`, mode: e.mode, type: "5" });
      else if (e.kind === "link")
        yield ustarHeader({ path: e.path, mode: e.mode, type: "1", linkname: e.target });
      else {
        yield ustarHeader({ path: e.path, mode: e.mode, type: "0", size: e.size });
        let sent = 0;
        for await (const chunk of Bun.file(e.source).stream()) {
          sent += chunk.length;
          if (sent > e.size) break;
          yield chunk;
        }
        if (sent !== e.size)
          throw new P2prcError("E_INTERNAL", `tar: ${e.source} is ${sent} bytes, not ${e.size}`);
        const pad = (BLOCK - (e.size % BLOCK)) % BLOCK;
        if (pad) yield new Uint8Array(pad);
      }
    }
    yield new Uint8Array(2 * BLOCK);
  }
  const it = blocks();
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      const { done, value } = await it.next();
      if (done) ctl.close();
      else ctl.enqueue(value);
    },
    async cancel() {
      await it.return(undefined);
    },
  });
}
