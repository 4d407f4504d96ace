// A future's imports: `{ imports: { name: "specifier" } }` binds `name` to that module on the node (its
// default export when it has one, else its namespace). Node's and Bun's own modules (`node:*`, `bun:*`) are
// in the runtime already; any other is resolved from the caller's directory and bundled with the program
// by Bun.build, once per function and import list.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { P2prcError } from "../../core/index.ts";
import { futureProgram } from "./program.ts";

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const BUILTIN = /^(node:|bun:|bun$)/;
const cache = new Map<string, Promise<string>>();

/** The program for `fnSource` with its imports bound, bundled when one is not built into the runtime. */
export function buildProgram(
  fnSource: string,
  imports: Record<string, string> = {},
  baseDir = process.cwd(),
): Promise<string> {
  const entries = Object.entries(imports);
  if (entries.length === 0) return Promise.resolve(futureProgram(fnSource));
  for (const [name] of entries)
    if (!IDENT.test(name) || name.startsWith("__"))
      throw new P2prcError("E_INVALID", `future: imports: ${name} is not a name a function can use`, {
        field: "imports",
      });
  const key = JSON.stringify([fnSource, entries, baseDir]);
  let built = cache.get(key);
  if (!built) {
    built = bundle(fnSource, entries, baseDir);
    built.catch(() => cache.delete(key));
    cache.set(key, built);
  }
  return built;
}

async function bundle(fnSource: string, entries: [string, string][], baseDir: string): Promise<string> {
  const lines: string[] = [];
  let external = true;
  entries.forEach(([name, spec], i) => {
    let path = spec;
    if (!BUILTIN.test(spec)) {
      external = false;
      try {
        path = Bun.resolveSync(spec, baseDir);
      } catch (err) {
        throw new P2prcError(
          "E_INVALID",
          `future: imports: cannot find ${spec} from ${baseDir}: ${(err as Error).message}`,
          { field: "imports" },
        );
      }
    }
    lines.push(
      `import * as __i${i} from ${JSON.stringify(path)};`,
      `const ${name} = "default" in __i${i} ? __i${i}.default : __i${i};`,
    );
  });
  const program = futureProgram(fnSource, lines.join("\n"));
  if (external) return program;
  const dir = mkdtempSync(join(tmpdir(), "p2prc-future-"));
  try {
    const entry = join(dir, "future.js");
    writeFileSync(entry, program);
    let text: string | undefined;
    let why = "";
    try {
      const out = await Bun.build({ entrypoints: [entry], target: "bun", format: "esm" });
      text = out.success ? await out.outputs[0]?.text() : undefined;
      why = out.logs.map((l) => l.message).join("; ");
    } catch (err) {
      why = (err as Error).message;
    }
    if (text === undefined)
      throw new P2prcError("E_INVALID", `future: bundling the imports failed: ${why}`, { field: "imports" });
    return text;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
