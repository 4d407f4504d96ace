import { copyFileSync, lstatSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { P2prcError } from "../core/index.ts";

/** Limits on a plugin's folder: it is copied into containers and served to peers whole. */
export const PLUGIN_LIMITS = { files: 512, bytes: 16 * 1024 * 1024, depth: 16 } as const;

/** A file or directory of a plugin, relative to its folder (`/`-separated). */
export interface PluginFile {
  path: string;
  type: "file" | "directory";
  /** Permission bits. */
  mode: number;
  size: number;
}

/** Folders never part of a plugin (a git clone's history). */
const SKIPPED = new Set([".git"]);

/**
 * Every file and directory of a plugin's folder, sorted, checked against PLUGIN_LIMITS. A symbolic link,
 * device or socket is refused: a plugin is plain files, so nothing in it can point outside it.
 */
export function pluginFiles(dir: string): PluginFile[] {
  const out: PluginFile[] = [];
  let bytes = 0;
  const walk = (abs: string, rel: string, depth: number) => {
    if (depth > PLUGIN_LIMITS.depth) {
      throw new P2prcError("E_INVALID", `plugin: ${rel} is nested more than ${PLUGIN_LIMITS.depth} deep`);
    }
    for (const name of readdirSync(abs).sort()) {
      if (depth === 0 && SKIPPED.has(name)) continue;
      const path = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(abs, name));
      if (st.isDirectory()) {
        out.push({ path, type: "directory", mode: st.mode & 0o777, size: 0 });
        walk(join(abs, name), path, depth + 1);
      } else if (st.isFile()) {
        bytes += st.size;
        out.push({ path, type: "file", mode: st.mode & 0o777, size: st.size });
      } else {
        throw new P2prcError("E_INVALID", `plugin: ${path} is not a regular file or a directory`, {
          hint: "a plugin is plain files: replace links with the files they point to",
        });
      }
      if (out.length > PLUGIN_LIMITS.files) {
        throw new P2prcError("E_TOO_LARGE", `plugin: more than ${PLUGIN_LIMITS.files} files`);
      }
      if (bytes > PLUGIN_LIMITS.bytes) {
        throw new P2prcError("E_TOO_LARGE", `plugin: more than ${PLUGIN_LIMITS.bytes / 1024 / 1024} MiB`);
      }
    }
  };
  walk(dir, "", 0);
  return out;
}

/** Copies a plugin's folder (as pluginFiles lists it) to `to`, which must not exist yet. */
export function copyPlugin(from: string, to: string): void {
  const files = pluginFiles(from);
  mkdirSync(to, { recursive: true });
  for (const f of files) {
    if (f.type === "directory") mkdirSync(join(to, f.path), { recursive: true, mode: f.mode | 0o700 });
    else copyFileSync(join(from, f.path), join(to, f.path));
  }
}
