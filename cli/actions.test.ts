import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ACTIONS, type ActionDef } from "./actions.ts";
import { FLAGS, flagSpellings, GLOBAL_FLAGS, MODIFIERS } from "./flags.ts";

const ROOT = resolve(import.meta.dir, "..");
const work = mkdtempSync(join(tmpdir(), "p2prc-actions-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("the action list", () => {
  test("each action either runs or is pending, and names are unique", () => {
    const names = new Set<string>();
    for (const action of ACTIONS as readonly ActionDef[]) {
      expect(typeof action.run === "function").toBe(action.pending === undefined);
      expect(names.has(action.name)).toBe(false);
      names.add(action.name);
    }
    for (const name of [...Object.keys(MODIFIERS), ...Object.keys(GLOBAL_FLAGS)]) {
      expect(names.has(name)).toBe(false);
      names.add(name);
    }
    expect(Object.keys(FLAGS).sort()).toEqual([...names].sort());
  });

  test("no spelling names two flags", () => {
    const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const owners = new Map<string, Set<string>>();
    for (const [name, def] of Object.entries(FLAGS)) {
      for (const spelling of [name, camel(name), ...(def.alias ?? [])]) {
        owners.set(spelling, (owners.get(spelling) ?? new Set()).add(name));
      }
    }
    const shared = [...owners].filter(([, names]) => names.size > 1).map(([s]) => s);
    expect(shared).toEqual([]);
    expect(flagSpellings().size).toBe(owners.size);
  });

  test("the server runs last", () => {
    expect(ACTIONS.at(-1)?.name).toBe("as-server");
  });
});

/**
 * Runs `bun cli/main.ts <args>` as the binary does and returns the p2prc modules it loaded (paths from the
 * repository root). The start-up of `--ls` is benchmarked (bench/startup), so a command loads its own
 * command module and no other.
 */
function loadedModules(args: string[]): string[] {
  const script = join(work, `probe-${Math.random().toString(36).slice(2)}.ts`);
  writeFileSync(
    script,
    [
      `process.argv = [process.argv[0], ${JSON.stringify(join(ROOT, "cli/main.ts"))}, ...process.argv.slice(2)];`,
      `process.on("exit", () => process.stderr.write("\\nMODULES " + JSON.stringify(Object.keys(require.cache)) + "\\n"));`,
      `await import(${JSON.stringify(join(ROOT, "cli/main.ts"))});`,
    ].join("\n"),
  );
  const home = join(work, `home-${Math.random().toString(36).slice(2)}`);
  const r = Bun.spawnSync([process.execPath, script, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: work, P2PRC: home },
    stdout: "pipe",
    stderr: "pipe",
  });
  const line = r.stderr
    .toString()
    .split("\n")
    .find((l) => l.startsWith("MODULES "));
  if (!line) throw new Error(`no module list (exit ${r.exitCode}): ${r.stderr.toString()}`);
  return (JSON.parse(line.slice("MODULES ".length)) as string[])
    .filter((p) => p.startsWith(`${ROOT}/`) || p.includes("/node_modules/"))
    .map((p) => p.replace(/^.*\/node_modules\//, "node_modules/").replace(`${ROOT}/`, ""));
}

/** The packages among the loaded modules (`node_modules/<name>/…` → `<name>`). */
const packages = (mods: string[]) =>
  [
    ...new Set(mods.filter((m) => m.startsWith("node_modules/")).map((m) => m.split("/")[1] as string)),
  ].sort();

const commandModules = (mods: string[]) => mods.filter((m) => m.startsWith("cli/commands/")).sort();

describe("what a command loads", () => {
  test("-h loads no command module and not the config module", () => {
    const mods = loadedModules(["-h"]);
    expect(mods).toContain("cli/help.ts");
    expect(commandModules(mods)).toEqual([]);
    expect(mods).not.toContain("config/index.ts");
  });

  test("--ls loads only its own command module, no server code, and of the heavy packages only SQLite", () => {
    const mods = loadedModules(["--ls"]);
    expect(commandModules(mods)).toEqual(["cli/commands/network-table.ts"]);
    // the server (dockerode, the engine, the routes' schemas) loads when a node starts, not for a read
    expect(mods.filter((m) => m.startsWith("server/"))).toEqual([]);
    expect(packages(mods)).not.toContain("dockerode");
    expect(packages(mods)).not.toContain("zod");
    expect(packages(mods)).not.toContain("@peculiar");
    expect(packages(mods)).toContain("better-sqlite3");
    // the dashboard and the metrics library load in a serving node only
    expect(mods.filter((m) => m.startsWith("server/dashboard/"))).toEqual([]);
    expect(packages(mods)).not.toContain("prom-client");
  });

  test("--vc loads no network code (p2p/, hono) and no server code", () => {
    const mods = loadedModules(["--vc"]);
    expect(mods.filter((m) => m.startsWith("p2p/") || m.startsWith("server/"))).toEqual([]);
    expect(packages(mods)).not.toContain("hono");
    expect(mods.filter((m) => m.startsWith("server/dashboard/"))).toEqual([]);
    expect(packages(mods)).not.toContain("prom-client");
  });

  test("--vc --ni loads only the two command modules they use", () => {
    expect(commandModules(loadedModules(["--vc", "--ni"]))).toEqual([
      "cli/commands/config.ts",
      "cli/commands/network.ts",
    ]);
  });
});
