// Dependency rules as a test (tailscale's deptest): reads every source file's imports and fails,
// naming the file and the edge, when an arrow points the wrong way.
//   cli → abstractions (and config and core) → client | server | p2p | plugins → config | store → core
//   siblings among client/server/p2p/plugins share only types; the store reaches them as types only (the
//   composition root, abstractions, opens it and hands each module its slice); core imports nothing of ours.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const MODULES = [
  "abstractions",
  "client",
  "server",
  "p2p",
  "plugins",
  "config",
  "store",
  "core",
  "cli",
] as const;
type Module = (typeof MODULES)[number];
const LOWER: Module[] = ["client", "server", "p2p", "plugins"];
const NO_PROCESSES: Module[] = ["server", "client", "p2p"];

/** Which of our modules each module may import at runtime. */
const ALLOWED: Record<Module, Module[]> = {
  cli: ["abstractions", "config", "core"],
  abstractions: ["client", "server", "p2p", "plugins", "config", "store", "core"],
  client: ["config", "core"],
  server: ["config", "core"],
  p2p: ["config", "core"],
  plugins: ["config", "core"],
  config: ["core"],
  store: ["core"],
  core: [],
};

/** Test helpers beside a module's tests: they build whole nodes, so they open a store themselves. */
const TEST_HELPERS = new Set(["p2p/test-net.ts"]);

/** Modules that may import these only with `import type` (they receive the store, never open it). */
const TYPES_ONLY: Partial<Record<Module, Module[]>> = {
  client: ["store"],
  server: ["store"],
  p2p: ["store"],
  plugins: ["store"],
};

/** Who may import a package (matched on the specifier). */
const PACKAGE_OWNERS: { pkg: RegExp; files: string[] }[] = [
  { pkg: /^dockerode(\/|$)/, files: ["server/engine/docker.ts"] },
  // the .d.ts only declares the types of the per-platform entry point
  { pkg: /^better-sqlite3(\/|$)/, files: ["store/store.ts", "store/better-sqlite3.d.ts"] },
  // every schema is built with core's `zod()`: zod/mini set up with English messages (classic "zod"
  // would bundle all of zod again, and zod/mini used directly would answer without messages)
  { pkg: /^zod(\/|$)/, files: ["core/zod.ts"] },
  // the metrics library loads with server/dashboard (a serving node), never with a command that does not serve
  { pkg: /^prom-client(\/|$)/, files: ["server/dashboard/metrics.ts"] },
];

interface Import {
  /** Relative to the repository root. */
  file: string;
  specifier: string;
  typeOnly: boolean;
  line: number;
}

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      if (name === "node_modules") continue;
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".ts") && !name.endsWith(".test.ts")) out.push(relative(ROOT, path));
    }
  };
  for (const m of MODULES) if (existsSync(join(ROOT, m))) walk(join(ROOT, m));
  return out.sort();
}

/**
 * Blanks comments (keeping line breaks) so commented-out or documented imports are not read.
 * String and template literals are skipped whole, so "unix://" or "src/*" do not start a comment.
 */
function stripComments(text: string): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    const next = text[i + 1];
    if (c === "/" && next === "/") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = text.indexOf("*/", i + 2);
      const stop = end === -1 ? text.length : end + 2;
      out += text.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Static imports/exports (with whether they are type-only), bare imports, dynamic import() and require(). */
function parseImports(file: string, text: string): Import[] {
  const code = stripComments(text);
  const lineOf = (index: number) => code.slice(0, index).split("\n").length;
  const found: { at: number; imp: Import }[] = [];
  const add = (m: RegExpMatchArray, specifier: string, typeOnly: boolean) => {
    // a match may begin with the whitespace before the keyword; count lines from the keyword
    const at = (m.index ?? 0) + m[0].length - m[0].trimStart().length;
    found.push({ at, imp: { file, specifier, typeOnly, line: lineOf(at) } });
  };
  // `import type X` / `export type {…}` are type-only; `import { type A }` still loads the module
  // under verbatimModuleSyntax, so it counts as a runtime edge.
  for (const m of code.matchAll(
    /(?<=^|[;\n])\s*(?:import|export)\s+(type\s+)?[^;'"]*?\bfrom\s*["']([^"']+)["']/g,
  ))
    add(m, m[2] as string, Boolean(m[1]));
  for (const m of code.matchAll(/(?<=^|[;\n])\s*import\s*["']([^"']+)["']/g)) add(m, m[1] as string, false);
  for (const m of code.matchAll(/\b(?:import|require)\s*\(\s*["']([^"']+)["']\s*\)/g))
    add(m, m[1] as string, false);
  return found.sort((a, b) => a.at - b.at).map((f) => f.imp);
}

function moduleOf(relPath: string): Module | undefined {
  const top = relPath.split("/")[0] ?? "";
  return (MODULES as readonly string[]).includes(top) ? (top as Module) : undefined;
}

const where = (i: Import) => `${i.file}:${i.line}`;
const targetOf = (i: Import) => relative(ROOT, resolve(ROOT, dirname(i.file), i.specifier));

function edgeViolations(imports: Import[]): string[] {
  const violations: string[] = [];
  for (const imp of imports) {
    if (!imp.specifier.startsWith(".")) continue;
    const from = moduleOf(imp.file);
    if (!from) continue;
    const target = targetOf(imp);
    const to = moduleOf(target);
    if (!to) {
      violations.push(`${where(imp)}: ${from} → ${target} (${imp.specifier}) is outside our modules`);
      continue;
    }
    if (to === from || ALLOWED[from].includes(to)) continue;
    if (LOWER.includes(from) && LOWER.includes(to) && imp.typeOnly) continue;
    if (TYPES_ONLY[from]?.includes(to) && (imp.typeOnly || TEST_HELPERS.has(imp.file))) continue;
    const why =
      from === "core"
        ? "core imports nothing of ours"
        : TYPES_ONLY[from]?.includes(to)
          ? `${from} receives its slice of the ${to}: use \`import type\``
          : LOWER.includes(from) && LOWER.includes(to)
            ? "siblings share only types: use `import type`"
            : `${from} may import only ${ALLOWED[from].join(", ")}`;
    violations.push(`${where(imp)}: ${from} → ${to} (${imp.specifier}); ${why}`);
  }
  return violations;
}

/**
 * Deliberate deep imports into another module, each with its reason. cli/help.ts reads the VERSION
 * constant alone so `-h` and `--version` answer before the rest of core loads.
 */
const DEEP_IMPORTS_ALLOWED = new Set<string>(["cli/help.ts → core/version.ts"]);

function indexViolations(imports: Import[]): string[] {
  const violations: string[] = [];
  for (const imp of imports) {
    if (!imp.specifier.startsWith(".")) continue;
    const from = moduleOf(imp.file);
    const target = targetOf(imp);
    const to = moduleOf(target);
    if (!from || !to || to === from) continue;
    if (target === `${to}/index.ts` || DEEP_IMPORTS_ALLOWED.has(`${imp.file} → ${target}`)) continue;
    violations.push(`${where(imp)}: ${from} → ${target}; import from ${to}/index.ts instead`);
  }
  return violations;
}

function packageViolations(imports: Import[]): string[] {
  const violations: string[] = [];
  for (const imp of imports) {
    for (const { pkg, files } of PACKAGE_OWNERS) {
      // a type-only import beside the owning file loads nothing (other store files name the db type)
      const besideOwner = imp.typeOnly && files.some((f) => dirname(f) === dirname(imp.file));
      if (pkg.test(imp.specifier) && !files.includes(imp.file) && !besideOwner)
        violations.push(`${where(imp)}: imports "${imp.specifier}"; only ${files.join(", ")} may`);
    }
    const m = moduleOf(imp.file);
    if (m && NO_PROCESSES.includes(m) && /^(node:)?child_process$/.test(imp.specifier))
      violations.push(`${where(imp)}: imports ${imp.specifier}; ${m} starts no child processes`);
  }
  return violations;
}

function spawnViolations(file: string, text: string): string[] {
  const m = moduleOf(file);
  if (!m || !NO_PROCESSES.includes(m)) return [];
  const code = stripComments(text);
  const out: string[] = [];
  if (/\bBun\s*\.\s*(spawn|spawnSync|\$)/.test(code)) out.push(`${file}: uses Bun.spawn or Bun.$`);
  if (/import\s*\{[^}]*(?<![\w$])(spawn|spawnSync|\$)(?![\w$])[^}]*\}\s*from\s*["']bun["']/.test(code))
    out.push(`${file}: imports spawn or $ from "bun"`);
  return out;
}

const FILES = sourceFiles();
const TEXTS = new Map(FILES.map((f) => [f, readFileSync(join(ROOT, f), "utf8")]));
const IMPORTS = FILES.flatMap((f) => parseImports(f, TEXTS.get(f) as string));

describe("dependency rules", () => {
  test("module edges point one way", () => {
    expect(edgeViolations(IMPORTS)).toEqual([]);
  });

  test("another module is entered only through its index.ts", () => {
    expect(indexViolations(IMPORTS)).toEqual([]);
  });

  test("only the owning file imports dockerode / better-sqlite3 / zod; no child_process below abstractions", () => {
    expect(packageViolations(IMPORTS)).toEqual([]);
  });

  test("server, client and p2p never spawn processes", () => {
    expect(FILES.flatMap((f) => spawnViolations(f, TEXTS.get(f) as string))).toEqual([]);
  });
});

describe("the checker itself", () => {
  test("reads every kind of import and skips comments", () => {
    const sample = parseImports(
      "x.ts",
      [
        'import type { A } from "../config/index.ts";',
        'import { b, type C } from "../server/index.ts";',
        "export { d } from './d.ts';",
        "export type { E } from './e.ts';",
        'import "./side-effect.ts";',
        'const url = "unix:///var/run/docker.sock"; const m = await import("dockerode");',
        '// import { nope } from "../cli/index.ts";',
        "/* import { nope2 } from '../cli/index.ts'; */",
        "const glob = 'src/*'; const r = require(\"./r.ts\"); // */",
      ].join("\n"),
    );
    expect(sample.map((i) => [i.specifier, i.typeOnly, i.line])).toEqual([
      ["../config/index.ts", true, 1],
      ["../server/index.ts", false, 2],
      ["./d.ts", false, 3],
      ["./e.ts", true, 4],
      ["./side-effect.ts", false, 5],
      ["dockerode", false, 6],
      ["./r.ts", false, 9],
    ]);
  });

  test("sees the real tree", () => {
    expect(FILES).toContain("config/index.ts");
    expect(FILES).toContain("server/engine/docker.ts");
    expect(FILES.some((f) => f.endsWith(".test.ts"))).toBe(false);
    expect(
      IMPORTS.some((i) => i.file === "abstractions/lazy.ts" && i.specifier === "../server/index.ts"),
    ).toBe(true);
    expect(IMPORTS.some((i) => i.file === "server/engine/docker.ts" && i.specifier === "dockerode")).toBe(
      true,
    );
  });

  test("reports bad edges naming the file and the edge", () => {
    const bad: Import[] = [
      { file: "config/load.ts", specifier: "../server/index.ts", typeOnly: true, line: 3 },
      { file: "server/x.ts", specifier: "../abstractions/index.ts", typeOnly: false, line: 4 },
      { file: "server/x.ts", specifier: "../p2p/index.ts", typeOnly: false, line: 5 },
      { file: "server/x.ts", specifier: "../p2p/index.ts", typeOnly: true, line: 6 },
      { file: "abstractions/y.ts", specifier: "../cli/index.ts", typeOnly: false, line: 7 },
      { file: "cli/z.ts", specifier: "../server/index.ts", typeOnly: false, line: 8 },
    ];
    expect(edgeViolations(bad)).toEqual([
      "config/load.ts:3: config → server (../server/index.ts); config may import only core",
      "server/x.ts:4: server → abstractions (../abstractions/index.ts); server may import only config, core",
      "server/x.ts:5: server → p2p (../p2p/index.ts); siblings share only types: use `import type`",
      "abstractions/y.ts:7: abstractions → cli (../cli/index.ts); abstractions may import only client, server, p2p, plugins, config, store, core",
      "cli/z.ts:8: cli → server (../server/index.ts); cli may import only abstractions, config, core",
    ]);
    expect(
      indexViolations([{ file: "server/x.ts", specifier: "../core/errors.ts", typeOnly: false, line: 1 }]),
    ).toEqual(["server/x.ts:1: server → core/errors.ts; import from core/index.ts instead"]);
  });

  test("reports packages and processes in the wrong place", () => {
    expect(
      packageViolations([
        { file: "server/engine/docker.ts", specifier: "dockerode", typeOnly: false, line: 1 },
        { file: "server/routes/x.ts", specifier: "dockerode", typeOnly: true, line: 2 },
        { file: "abstractions/a.ts", specifier: "better-sqlite3/linux-x64", typeOnly: false, line: 3 },
        { file: "p2p/a.ts", specifier: "node:child_process", typeOnly: false, line: 4 },
        { file: "abstractions/b.ts", specifier: "node:child_process", typeOnly: false, line: 5 },
      ]),
    ).toEqual([
      'server/routes/x.ts:2: imports "dockerode"; only server/engine/docker.ts may',
      'abstractions/a.ts:3: imports "better-sqlite3/linux-x64"; only store/store.ts, store/better-sqlite3.d.ts may',
      "p2p/a.ts:4: imports node:child_process; p2p starts no child processes",
    ]);
    expect(spawnViolations("server/a.ts", "const p = Bun.spawn(['ls']);")).toHaveLength(1);
    expect(spawnViolations("client/a.ts", 'import { $ } from "bun";')).toHaveLength(1);
    expect(spawnViolations("client/a.ts", 'import { serve } from "bun"; // Bun.spawn')).toEqual([]);
    expect(spawnViolations("abstractions/a.ts", "Bun.spawn(['ls'])")).toEqual([]);
  });
});
