import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../core/index.ts";
import { FLAGS } from "./flags.ts";
import { SUBCOMMAND_USAGE } from "./help.ts";
import type { CliIO } from "./io.ts";
import { normalizeArgs, runCli } from "./run.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-cli-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let homes = 0;
function freshHome(): string {
  return join(root, `home-${++homes}`);
}

interface Run {
  code: number;
  out: string;
  err: string;
  errLines: string[];
}

/** Runs the CLI in-process with captured stdout/stderr and `P2PRC=<home>` as its only env. */
async function cli(argv: string[], home: string, env: Record<string, string> = {}): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = {
    out: (t) => out.push(t.endsWith("\n") ? t : `${t}\n`),
    err: (t) => err.push(t.endsWith("\n") ? t : `${t}\n`),
  };
  const code = await runCli(argv, { io, env: { P2PRC: home, ...env } });
  const errText = err.join("");
  return { code, out: out.join(""), err: errText, errLines: errText.split("\n").filter(Boolean) };
}

/** A user error: exit 2, first stderr line `p2prc: …`, at most one more line and it is a hint. */
function expectUserError(r: Run, ...needles: string[]): void {
  expect(r.code).toBe(2);
  expect(r.errLines.length).toBeGreaterThanOrEqual(1);
  expect(r.errLines.length).toBeLessThanOrEqual(2);
  expect(r.errLines[0]).toStartWith("p2prc: ");
  if (r.errLines[1] !== undefined) expect(r.errLines[1]).toStartWith("hint: ");
  for (const n of needles) expect(r.errLines[0]).toContain(n);
  expect(r.err).not.toMatch(/\n\s+at /); // no stack trace
  expect(r.out).toBe("");
}

describe("help and version", () => {
  test("-h lists the new names and P2PRC's aliases, exit 0", async () => {
    const r = await cli(["-h"], freshHome());
    expect(r.code).toBe(0);
    expect(r.err).toBe("");
    for (const s of [
      "--as-server",
      "--exec-container",
      "--dc",
      "--SetDefaultConfig",
      "--touch",
      "--CreateVM",
    ]) {
      expect(r.out).toContain(s);
    }
    // the plugin flags were the last "not available yet" (issue 14)
    expect(r.out).toMatch(/--view-plugins.*List installed plugins$/m);
    // every flag has its line
    for (const name of Object.keys(FLAGS)) expect(r.out).toMatch(new RegExp(`^  --${name}\\b`, "m"));
  });

  test("--help and no arguments print the same help", async () => {
    const h = await cli(["-h"], freshHome());
    expect((await cli(["--help"], freshHome())).out).toBe(h.out);
    expect((await cli([], freshHome())).out).toBe(h.out);
  });

  test("--version and -v print the version", async () => {
    for (const flag of ["--version", "-v"]) {
      const r = await cli([flag], freshHome());
      expect(r.code).toBe(0);
      expect(r.out.trim()).toBe(VERSION);
    }
  });

  test("the subcommands' lines in -h name every flag they take, and Docs/CLI.md shows the same lines (defect 12)", async () => {
    const r = await cli(["-h"], freshHome());
    const demo = r.out.split("\n").find((l) => l.includes("p2prc demo mandelbrot")) ?? "";
    for (const f of ["--tiles", "--size", "--image", "--max-iter", "--out", "--nodes", "--json"])
      expect(demo).toContain(f);
    const docs = readFileSync(join(import.meta.dir, "../Docs/CLI.md"), "utf8");
    for (const usage of Object.values(SUBCOMMAND_USAGE)) {
      expect(r.out).toContain(`  ${usage}`);
      expect(docs).toContain(usage);
    }
    // Docs/CLI.md no longer says batch has no -h
    expect(docs).not.toContain("there is no `-h`");
  });

  test("batch -h and demo -h print their usage, exit 0", async () => {
    const b = await cli(["batch", "-h"], freshHome());
    expect(b.code).toBe(0);
    expect(b.out).toContain(SUBCOMMAND_USAGE.batch);
    expect(b.out).toContain(SUBCOMMAND_USAGE.status);
    expect(b.out).toContain("Ctrl-C");
    const d = await cli(["demo", "--help"], freshHome());
    expect(d.code).toBe(0);
    expect(d.out).toContain(SUBCOMMAND_USAGE.demo);
  });

  test("help and version write nothing to the home", async () => {
    const home = freshHome();
    await cli(["-h"], home);
    await cli(["--version"], home);
    expect(existsSync(home)).toBe(false);
  });
});

describe("usage errors", () => {
  test("an unknown flag exits 2 with one message line", async () => {
    const r = await cli(["--bogus"], freshHome());
    expectUserError(r, "unknown flag --bogus");
  });

  test("an unknown single-dash flag with a value is named without its value", async () => {
    const r = await cli(["-nope=3"], freshHome());
    expectUserError(r, "unknown flag -nope");
    expect(r.errLines[0]).not.toContain("=3");
  });

  test("a string flag without a value exits 2", async () => {
    expectUserError(await cli(["--vc", "--config-dir"], freshHome()), "--config-dir needs a value");
    expectUserError(await cli(["--port", "--vc"], freshHome()), "--port needs a value");
  });

  test("--vp (the last pending action, issue 14) now lists plugins: none in a fresh home", async () => {
    for (const spelling of ["--vp", "-ViewPlugins"]) {
      const r = await cli([spelling], freshHome());
      expect(r.code).toBe(0);
      expect(r.out).toContain("no plugins installed");
    }
  });

  test("every pending flag, under every spelling, answers 'not available yet'", async () => {
    const pending = (
      Object.entries(FLAGS) as [string, { type: string; alias?: string[]; pending?: string }][]
    ).filter(([, def]) => def.pending);
    for (const [name, def] of pending) {
      for (const spelling of [`--${name}`, ...(def.alias ?? []).map((a) => `-${a}`)]) {
        const argv = def.type === "string" ? [spelling, "x"] : [spelling];
        const r = await cli(argv, freshHome());
        expectUserError(r, `--${name}`, "not available yet");
      }
    }
  });

  test("a modifier alone is 'no action given'", async () => {
    expectUserError(await cli(["--json"], freshHome()), "no action");
  });

  test("a stray positional argument exits 2", async () => {
    expectUserError(await cli(["--vc", "extra"], freshHome()), '"extra"');
  });

  test("P2PRC_SERVER_PORT=abc with --vc exits 2 naming serverPort", async () => {
    const r = await cli(["--vc"], freshHome(), { P2PRC_SERVER_PORT: "abc" });
    expectUserError(r, "serverPort", '"abc"', "P2PRC_SERVER_PORT");
  });

  test("--port abc --vc exits 2 naming serverPort and the flag", async () => {
    const r = await cli(["--port", "abc", "--vc"], freshHome());
    expectUserError(r, "serverPort", '"abc"', "command-line flag");
  });

  test("--debug adds the stack trace", async () => {
    const r = await cli(["--vc", "--debug"], freshHome(), { P2PRC_SERVER_PORT: "abc" });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/\n\s+at /);
  });
});

describe("config commands", () => {
  test("--dc creates the home; a second --dc keeps the node id", async () => {
    const home = freshHome();
    const first = await cli(["--dc", "--json"], home);
    expect(first.code).toBe(0);
    expect(first.err).toBe("");
    const a = JSON.parse(first.out);
    expect(a.nodeId).toMatch(/^[0-9a-f]{64}$/);
    expect(a.home).toBe(home);
    expect(a.added.length).toBeGreaterThan(0);
    expect(existsSync(join(home, "config.json"))).toBe(true);
    expect(statSync(join(home, "identity", "node.key")).mode & 0o777).toBe(0o600);
    expect(existsSync(join(home, "state.db"))).toBe(true);

    const second = await cli(["--dc", "--json"], home);
    expect(second.code).toBe(0);
    const b = JSON.parse(second.out);
    expect(b.nodeId).toBe(a.nodeId);
    expect(b.added).toEqual([]);
  });

  test("-dc (single dash) and --SetDefaultConfig work like --dc", async () => {
    for (const spelling of ["-dc", "--SetDefaultConfig", "-SetDefaultConfig", "--setDefaultConfig"]) {
      const home = freshHome();
      const r = await cli([spelling], home);
      expect(r.code).toBe(0);
      expect(r.out).toContain("node id: ");
      expect(existsSync(join(home, "identity", "node.key"))).toBe(true);
    }
  });

  test("--vc --json parses and carries nodeId (null before --dc, the id after)", async () => {
    const home = freshHome();
    const before = await cli(["--vc", "--json"], home);
    expect(before.code).toBe(0);
    const v0 = JSON.parse(before.out);
    expect(v0).toHaveProperty("nodeId");
    expect(v0.nodeId).toBeNull();
    expect(v0.serverPort).toBe(8088);
    expect(v0.home).toBe(home);
    expect(existsSync(home)).toBe(false); // --vc writes nothing

    const dc = JSON.parse((await cli(["--dc", "--json"], home)).out);
    const after = JSON.parse((await cli(["--vc", "--json"], home)).out);
    expect(after.nodeId).toBe(dc.nodeId);
  });

  test("--vc shows env and flag overrides", async () => {
    const home = freshHome();
    const v = JSON.parse((await cli(["--vc", "--port", "9001"], home, { P2PRC_MAX_CONTAINERS: "3" })).out);
    expect(v.serverPort).toBe(9001);
    expect(v.maxContainers).toBe(3);
  });

  test("--config-dir overrides $P2PRC", async () => {
    const envHome = freshHome();
    const flagHome = freshHome();
    const r = await cli(["--vc", "--config-dir", flagHome], envHome);
    expect(JSON.parse(r.out).home).toBe(flagHome);
  });

  test("--whoami prints the node id, the same as --dc's", async () => {
    const home = freshHome();
    const dc = JSON.parse((await cli(["--dc", "--json"], home)).out);
    const who = await cli(["--whoami"], home);
    expect(who.code).toBe(0);
    expect(who.out.trim()).toBe(dc.nodeId);
    const whoJson = JSON.parse((await cli(["--whoami", "--json"], home)).out);
    expect(whoJson.id).toBe(dc.nodeId);
    expect(whoJson.publicKey).toContain("BEGIN PUBLIC KEY");
  });

  test("--whoami on a fresh home creates an identity", async () => {
    const home = freshHome();
    const who = await cli(["--whoami"], home);
    expect(who.code).toBe(0);
    expect(who.out.trim()).toMatch(/^[0-9a-f]{64}$/);
    expect((await cli(["--whoami"], home)).out).toBe(who.out);
  });

  test("a bad config.json is reported, not overwritten", async () => {
    const home = freshHome();
    await cli(["--dc"], home);
    const path = join(home, "config.json");
    await Bun.write(path, '{"serverPort": 0}');
    const r = await cli(["--dc"], home);
    expectUserError(r, "serverPort", path);
    expect(await Bun.file(path).text()).toBe('{"serverPort": 0}');
  });
});

describe("normalizeArgs", () => {
  test("maps P2PRC spellings to canonical flags and keeps values", () => {
    expect(normalizeArgs(["-dc"])).toEqual(["--set-default-config"]);
    expect(normalizeArgs(["-touch=auto", "-p", "8080"])).toEqual([
      "--exec-container=auto",
      "--ports",
      "8080",
    ]);
    expect(normalizeArgs(["--port", "-1"])).toEqual(["--port", "-1"]);
    expect(normalizeArgs(["--vc", "--", "-x"])).toEqual(["--view-config", "--", "-x"]);
  });
});

// Gaps found by these tests and fixed since.
describe("regressions", () => {
  // normalizeArgs strips "no-" to find the flag but then emits the positive flag, so the negation is
  // lost: `--no-vc` runs --vc and `--dc --no-json` prints JSON.
  test("--no-<flag> negates instead of setting the flag", async () => {
    const home = freshHome();
    expect((await cli(["--no-vc"], home)).code).toBe(2);
    const dc = await cli(["--dc", "--no-json"], home);
    expect(dc.out).toContain("node id: ");
  });

  // setDefaultConfig resolves dataDir from config.json alone, while --vc (loadConfig) also applies env
  // and flags, so with P2PRC_DATA_DIR set --dc creates state.db in the home but --vc reports another path.
  test("--dc and --vc agree on stateDb when P2PRC_DATA_DIR is set", async () => {
    const home = freshHome();
    const env = { P2PRC_DATA_DIR: join(home, "data") };
    const dc = JSON.parse((await cli(["--dc", "--json"], home, env)).out);
    const vc = JSON.parse((await cli(["--vc"], home, env)).out);
    expect(dc.stateDb).toBe(vc.stateDb);
    expect(existsSync(vc.stateDb)).toBe(true);
  });
});

test("--dc with a bad env value writes nothing", async () => {
  const { mkdtempSync, existsSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const home = join(mkdtempSync(join(tmpdir(), "p2prc-dc-")), "home");
  const lines: string[] = [];
  const io = { out: (t: string) => lines.push(t), err: (t: string) => lines.push(t) };
  const code = await runCli(["--dc"], { io, env: { P2PRC: home, P2PRC_SERVER_PORT: "abc" } });
  expect(code).toBe(2);
  expect(lines.join("\n")).toContain("serverPort");
  expect(existsSync(join(home, "config.json"))).toBe(false);
});
