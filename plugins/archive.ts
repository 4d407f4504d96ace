import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { createTar, parseTar } from "nanotar";
import { P2prcError } from "../core/index.ts";
import { PLUGIN_LIMITS, pluginFiles } from "./files.ts";
import { isPluginPath } from "./types.ts";

/** Hex sha256 of bytes. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * A plugin's folder as a tar: entries sorted, owner 0 and time 0, so the same files always give the same
 * bytes (and the same sha256, which a peer's copy is checked against). `prefix` names a top folder.
 */
export function packPlugin(dir: string, prefix = ""): Uint8Array {
  const at = (p: string) => (prefix ? `${prefix}/${p}` : p);
  const attrs = (mode: number) => ({ mode: mode.toString(8), uid: 0, gid: 0, mtime: 0, user: "", group: "" });
  return createTar(
    pluginFiles(dir).map((f) =>
      f.type === "directory"
        ? { name: `${at(f.path)}/`, attrs: attrs(f.mode) }
        : { name: at(f.path), data: readFileSync(join(dir, f.path)), attrs: attrs(f.mode) },
    ),
  );
}

/** The tar inside `bytes` (gzip-compressed or not), bounded by PLUGIN_LIMITS. */
function tarBytes(bytes: Uint8Array): Uint8Array {
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    // the tar's headers and padding on top of the files' own limit
    return gunzipSync(bytes, { maxOutputLength: PLUGIN_LIMITS.bytes + (PLUGIN_LIMITS.files + 1) * 1024 * 2 });
  } catch (err) {
    throw new P2prcError("E_INVALID", `plugin archive: not a readable gzip file (${(err as Error).message})`);
  }
}

/**
 * Unpacks a plugin archive (tar or tar.gz) into `dest`. Only files and directories with relative names
 * (no `..`, no absolute path) are accepted, within PLUGIN_LIMITS; anything else refuses the whole archive.
 */
export function unpackPlugin(bytes: Uint8Array, dest: string): void {
  let entries: { name: string; type?: string | undefined; data?: Uint8Array; attrs?: { mode?: string } }[];
  try {
    entries = parseTar(tarBytes(bytes));
  } catch (err) {
    throw new P2prcError("E_INVALID", `plugin archive: not a tar file (${(err as Error).message})`);
  }
  if (entries.length === 0) throw new P2prcError("E_INVALID", "plugin archive: empty or not a tar file");
  if (entries.length > PLUGIN_LIMITS.files + 1) {
    throw new P2prcError("E_TOO_LARGE", `plugin archive: more than ${PLUGIN_LIMITS.files} files`);
  }
  let total = 0;
  mkdirSync(dest, { recursive: true });
  for (const e of entries) {
    // pax headers (`git archive` writes one) carry metadata only
    if (e.type === "globalExtendedHeader" || e.type === "extendedHeader") continue;
    const name = e.name.replace(/^\.\//, "").replace(/\/+$/, "");
    if (name === "" || name === ".") continue;
    if (!isPluginPath(name)) {
      throw new P2prcError(
        "E_INVALID",
        `plugin archive: refused entry "${e.name.slice(0, 200)}" (outside the plugin)`,
      );
    }
    if (name.split("/").length > PLUGIN_LIMITS.depth + 1) {
      throw new P2prcError("E_INVALID", `plugin archive: ${name} is nested too deep`);
    }
    const mode = Number.parseInt(e.attrs?.mode ?? "644", 8) & 0o777;
    if (e.type === "directory") {
      mkdirSync(join(dest, name), { recursive: true });
    } else if (e.type === "file") {
      const data = e.data ?? new Uint8Array();
      total += data.length;
      if (total > PLUGIN_LIMITS.bytes) {
        throw new P2prcError(
          "E_TOO_LARGE",
          `plugin archive: more than ${PLUGIN_LIMITS.bytes / 1024 / 1024} MiB`,
        );
      }
      mkdirSync(join(dest, name, ".."), { recursive: true });
      writeFileSync(join(dest, name), data, { mode: Number.isNaN(mode) ? 0o644 : mode | 0o600 });
    } else {
      throw new P2prcError("E_INVALID", `plugin archive: ${name} is a ${e.type}: only files and directories`);
    }
  }
}
