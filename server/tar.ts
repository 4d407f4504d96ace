// Small tar archives the server writes into containers itself (authorized_keys), built with nanotar.
// Uploads from clients are passed to the engine untouched.
import { createTar as nanoCreateTar } from "nanotar";

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
