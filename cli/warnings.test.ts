// Defect 8: an unreachable DOCKER_HOST=tcp://… made the compiled CLI print Node's DEP0169 warning (from
// docker-modem's url.parse) and suggest `p2prc --trace-warnings`. Run outside node_modules, as the binary is.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

function run(script: string) {
  const r = Bun.spawnSync([process.execPath, "-e", script], { cwd: "/tmp", stderr: "pipe", stdout: "pipe" });
  return r.stderr.toString();
}

test("url.parse's DEP0169 is dropped; other warnings still print", () => {
  const call = `require("url").parse("http://127.0.0.1:2375/x");
    process.emitWarning("other", { type: "DeprecationWarning", code: "DEP9999" });
    process.emitWarning("plain");`;
  // without the module the warning prints (this is what the binary did)
  expect(run(call)).toContain("DEP0169");
  const err = run(`await import(${JSON.stringify(join(ROOT, "cli/warnings.ts"))}); ${call}`);
  expect(err).not.toContain("DEP0169");
  expect(err).not.toContain("url.parse");
  expect(err).toContain("DEP9999");
  expect(err).toContain("plain");
});

test("cli/main.ts loads it before anything else", () => {
  const main = readFileSync(join(ROOT, "cli/main.ts"), "utf8");
  const firstImport = main.split("\n").find((l) => /^import |await import\(/.test(l));
  expect(firstImport).toBe('import "./warnings.ts";');
});
