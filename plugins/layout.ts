import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { P2prcError } from "../core/index.ts";
import { PLUGIN_NAME, type PluginInfo, pluginSchemas, schemaError } from "./types.ts";

/** P2PRC's plugin layout: the files that make a folder one. */
export const P2PRC_FILES = ["description.txt", "ports.json", "site.yml"] as const;

const MAX_MANIFEST = 64 * 1024;

function readSmall(path: string, what: string): string {
  if (statSync(path).size > MAX_MANIFEST) {
    throw new P2prcError("E_TOO_LARGE", `${what}: more than ${MAX_MANIFEST / 1024} KiB`);
  }
  return readFileSync(path, "utf8");
}

/** plugin.json in `dir`, validated, with its entry script present. */
function readManifest(dir: string, folder: string): PluginInfo {
  let raw: unknown;
  try {
    raw = JSON.parse(readSmall(join(dir, "plugin.json"), "plugin.json"));
  } catch (err) {
    if (err instanceof P2prcError) throw err;
    throw new P2prcError("E_INVALID", `plugin.json: not valid JSON (${(err as Error).message})`);
  }
  const parsed = pluginSchemas().PluginManifestSchema.safeParse(raw);
  if (!parsed.success) throw schemaError("plugin.json", parsed.error);
  const m = parsed.data;
  if (folder && m.name !== folder) {
    throw new P2prcError("E_INVALID", `plugin.json: name "${m.name}" is not its folder's name "${folder}"`);
  }
  const entry = join(dir, m.entry);
  if (!existsSync(entry) || !statSync(entry).isFile()) {
    throw new P2prcError("E_INVALID", `plugin.json: entry ${m.entry} is not a file of the plugin`);
  }
  return {
    name: m.name,
    kind: "p2prc",
    version: m.version,
    description: m.description,
    ports: m.ports,
    dir,
    manifest: m,
  };
}

/** P2PRC's layout: description.txt (free text), ports.json `{"NumOfPorts": n}`, site.yml (and hosts). */
function readP2prcLayout(dir: string, name: string): PluginInfo {
  for (const f of P2PRC_FILES) {
    if (!existsSync(join(dir, f))) throw new P2prcError("E_INVALID", `P2PRC plugin: no ${f}`);
  }
  let ports: unknown;
  try {
    ports = (JSON.parse(readSmall(join(dir, "ports.json"), "ports.json")) as { NumOfPorts?: unknown })
      .NumOfPorts;
  } catch (err) {
    if (err instanceof P2prcError) throw err;
    throw new P2prcError("E_INVALID", `ports.json: not valid JSON (${(err as Error).message})`);
  }
  if (!Number.isInteger(ports) || (ports as number) < 0 || (ports as number) > 16) {
    throw new P2prcError("E_INVALID", "ports.json: NumOfPorts: expected a whole number from 0 to 16");
  }
  return {
    name,
    kind: "p2prc-ansible",
    version: undefined,
    description: readSmall(join(dir, "description.txt"), "description.txt").trim(),
    ports: ports as number,
    dir,
  };
}

/**
 * The plugin in folder `dir` named `name` (its folder's name; "" when it is not installed yet): p2prc's
 * own format when there is a plugin.json, else P2PRC's layout. Throws E_INVALID saying what is wrong.
 */
export function readPlugin(dir: string, name: string): PluginInfo {
  if (name && !PLUGIN_NAME.test(name)) {
    throw new P2prcError("E_INVALID", `"${name}" is not a plugin name (letters, digits, '.', '_', '-')`);
  }
  if (existsSync(join(dir, "plugin.json"))) return readManifest(dir, name);
  if (P2PRC_FILES.some((f) => existsSync(join(dir, f)))) return readP2prcLayout(dir, name);
  throw new P2prcError(
    "E_INVALID",
    "not a plugin: no plugin.json, nor P2PRC's description.txt, ports.json and site.yml",
  );
}
