import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { P2prcError } from "../core/index.ts";
import { packPlugin, sha256, unpackPlugin } from "./archive.ts";
import { copyPlugin } from "./files.ts";
import { readPlugin } from "./layout.ts";
import { type RunProcess, runProcess, type Which, which } from "./process.ts";
import { PLUGIN_NAME, type PluginEntry, type PluginInfo } from "./types.ts";

/** Where incoming plugins are unpacked before they are moved into place (never listed). */
const INCOMING = ".incoming-";

/**
 * `--vp`: every folder under `root`, sorted by name: a plugin, or a broken folder with the reason. One
 * broken plugin never fails the listing (P2PRC's DetectPlugins failed whole).
 */
export function listPlugins(root: string): PluginEntry[] {
  if (!existsSync(root)) return [];
  const out: PluginEntry[] = [];
  for (const name of readdirSync(root).sort()) {
    if (name.startsWith(".")) continue;
    const dir = join(root, name);
    if (!statSync(dir).isDirectory()) continue;
    try {
      out.push({ ok: true, ...readPlugin(dir, name) });
    } catch (err) {
      out.push({ ok: false, name, dir, error: (err as Error).message });
    }
  }
  return out;
}

/** The installed plugin `name`, ready to run; E_NOT_FOUND, or E_INVALID saying what is broken in it. */
export function findPlugin(root: string, name: string): PluginInfo {
  if (!PLUGIN_NAME.test(name)) {
    throw new P2prcError("E_INVALID", `"${name}" is not a plugin name (letters, digits, '.', '_', '-')`, {
      field: "plugin",
    });
  }
  const dir = join(root, name);
  if (!existsSync(dir)) {
    throw new P2prcError("E_NOT_FOUND", `no plugin ${name} is installed`, {
      field: "plugin",
      hint: "p2prc --vp lists the installed plugins; p2prc --pp <source> installs one",
    });
  }
  try {
    return readPlugin(dir, name);
  } catch (err) {
    throw new P2prcError("E_INVALID", `plugin ${name} is broken: ${(err as Error).message}`, {
      field: "plugin",
      cause: err,
    });
  }
}

/** `--rp <name>`: removes an installed plugin's folder (a broken one too). */
export function removePlugin(root: string, name: string): { name: string; dir: string } {
  if (!PLUGIN_NAME.test(name)) {
    throw new P2prcError("E_INVALID", `"${name}" is not a plugin name`, { field: "plugin" });
  }
  const dir = join(root, name);
  if (!existsSync(dir)) {
    throw new P2prcError("E_NOT_FOUND", `no plugin ${name} is installed`, {
      field: "plugin",
      hint: "p2prc --vp lists the installed plugins",
    });
  }
  rmSync(dir, { recursive: true, force: true });
  return { name, dir };
}

/** An installed plugin and where it came from. */
export interface InstalledPlugin extends PluginInfo {
  source: string;
  /** sha256 of its archive (packPlugin), as a member node serves it. */
  sha256: string;
}

/**
 * Moves the plugin unpacked in `staged` (or in its one sub-folder, as `tar czf x.tgz web-hello/` makes)
 * into `root`: under its manifest's name, else `fallbackName` (a P2PRC folder has none of its own).
 */
function commit(root: string, staged: string, fallbackName: string, source: string): InstalledPlugin {
  const entries = readdirSync(staged).filter((n) => n !== ".git");
  const single = entries.length === 1 ? join(staged, entries[0] as string) : undefined;
  const top = single && statSync(single).isDirectory() ? single : staged;
  let info: PluginInfo;
  try {
    info = readPlugin(top, "");
  } catch (err) {
    throw new P2prcError("E_INVALID", `${source}: ${(err as Error).message}`, { cause: err });
  }
  const name = info.kind === "p2prc" ? info.name : fallbackName || basename(top);
  if (!PLUGIN_NAME.test(name)) {
    throw new P2prcError(
      "E_INVALID",
      `${source}: "${name}" is not a plugin name (letters, digits, '.', '_', '-')`,
    );
  }
  const dir = join(root, name);
  if (existsSync(dir)) {
    throw new P2prcError("E_CONFLICT", `a plugin ${name} is installed already`, {
      field: "plugin",
      hint: `remove it first: p2prc --rp ${name}`,
    });
  }
  // copied file by file (links and devices refused, limits checked), then renamed into place at once
  const ready = join(staged, "..", `${basename(staged)}-ready`);
  copyPlugin(top, ready);
  renameSync(ready, dir);
  const installed = readPlugin(dir, name);
  return { ...installed, source, sha256: sha256(packPlugin(dir)) };
}

/** Runs `fn` with a fresh staging folder under `root`, removed afterwards. */
function staging<T>(root: string, fn: (dir: string) => T): T {
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, INCOMING));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}-ready`, { recursive: true, force: true });
  }
}

/** Installs from a local folder. */
export function installFromFolder(root: string, folder: string): InstalledPlugin {
  return staging(root, (dir) => {
    copyPlugin(folder, join(dir, "plugin"));
    return commit(root, join(dir, "plugin"), basename(folder), folder);
  });
}

/** Installs from a tar or tar.gz archive's bytes; `expectSha256` (hex) must match when given. */
export function installFromArchive(
  root: string,
  bytes: Uint8Array,
  source: string,
  expectSha256?: string,
  fallbackName = "",
): InstalledPlugin {
  if (expectSha256 && sha256(bytes) !== expectSha256.toLowerCase()) {
    throw new P2prcError(
      "E_INVALID",
      `${source}: sha256 ${sha256(bytes)} is not the expected ${expectSha256}`,
      {
        hint: "the archive changed on the way or at its source: it was not installed",
      },
    );
  }
  return staging(root, (dir) => {
    unpackPlugin(bytes, join(dir, "plugin"));
    return commit(root, join(dir, "plugin"), fallbackName, source);
  });
}

/** A source that names a git repository, not a local path. */
export function isGitSource(source: string): boolean {
  return /^(git\+)?(https?|ssh|git|file):\/\//.test(source) || /^[\w.-]+@[\w.-]+:/.test(source);
}

/**
 * The folder a git URL installs into: its last path segment without `.git`, whole (P2PRC cut the last
 * character off: `…/a/repo` became `a_rep`). `https://github.com/a/p2prc-vscode-browser.git` →
 * `p2prc-vscode-browser`.
 */
export function gitFolderName(url: string): string {
  const path = url
    .replace(/^git\+/, "")
    .replace(/[?#].*$/, "")
    .replace(/^[\w.-]+@[\w.-]+:/, "/")
    .replace(/^[a-z]+:\/\/[^/]*/, "");
  const last = path.split("/").filter(Boolean).pop() ?? "";
  const name = last.replace(/\.git$/, "");
  if (!PLUGIN_NAME.test(name)) {
    throw new P2prcError("E_INVALID", `${url}: cannot name a plugin folder from it`, { field: "source" });
  }
  return name;
}

/** Installs by cloning a git repository (needs `git` on PATH). */
export async function installFromGit(
  root: string,
  url: string,
  o: { run?: RunProcess; which?: Which; timeoutMs?: number } = {},
): Promise<InstalledPlugin> {
  const git = (o.which ?? which)("git");
  if (!git) {
    throw new P2prcError("E_NOT_AVAILABLE", `cannot install ${url}: git is not installed on this machine`, {
      hint: "install git (apt-get install git), or download the plugin and install it from its folder or a tar",
    });
  }
  const name = gitFolderName(url);
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, INCOMING));
  try {
    const clone = join(dir, name);
    const res = await (o.run ?? runProcess)(
      [git, "clone", "--depth", "1", "--", url.replace(/^git\+/, ""), clone],
      { env: { ...process.env, GIT_TERMINAL_PROMPT: "0" }, timeoutMs: o.timeoutMs ?? 120_000 },
    );
    if (res.code !== 0) {
      const why = res.timedOut ? "timed out" : res.stderr.trim().split("\n").pop() || `exit ${res.code}`;
      throw new P2prcError("E_INVALID", `git clone ${url}: ${why}`, { field: "source" });
    }
    rmSync(join(clone, ".git"), { recursive: true, force: true });
    return commit(root, clone, name, url);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}-ready`, { recursive: true, force: true });
  }
}

/** An installed plugin as a member node serves it to peers: its archive and the archive's sha256. */
export function pluginArchive(root: string, name: string) {
  const info = findPlugin(root, name);
  const archive = packPlugin(info.dir);
  return { name: info.name, kind: info.kind, version: info.version, sha256: sha256(archive), archive };
}
