// The compiled `p2prc` binary, run alone in a temp dir with no node_modules anywhere above it:
// proves `bun build --compile` embedded everything (citty, zod, the better-sqlite3 addon).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { buildFlags } from "../bench/lib.ts";
import { NODE_ALLOCATOR_ENV } from "../cli/allocator.ts";
import { TRIM_FIRST_MS } from "../cli/pages.ts";
import { freePort, waitFor } from "./support.ts";

const ROOT = resolve(import.meta.dir, "..");
const SOURCE_DIRS = "abstractions client server p2p plugins config core store cli".split(" ");

let dir = "";
let bin = "";
let home = "";

/** Newest mtime of the sources the binary is built from. */
function newestSource(): number {
  let newest = 0;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else if (name.endsWith(".ts") && !name.endsWith(".test.ts")) newest = Math.max(newest, st.mtimeMs);
    }
  };
  for (const d of SOURCE_DIRS) if (existsSync(join(ROOT, d))) walk(join(ROOT, d));
  return newest;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "p2prc-bin-"));
  bin = join(dir, "p2prc");
  home = join(dir, "home");
  const built = join(ROOT, "p2prc");
  // `make test` builds ./p2prc first; build our own when it is missing or older than the sources.
  if (existsSync(built) && statSync(built).mtimeMs >= newestSource()) {
    copyFileSync(built, bin);
  } else {
    const out = Bun.spawnSync(
      [join(ROOT, "node_modules/.bin/bun"), "build", ...buildFlags(ROOT), "cli/main.ts", "--outfile", bin],
      { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
    );
    if (out.exitCode !== 0) throw new Error(`bun build --compile failed: ${out.stderr.toString()}`);
  }
  expect(readdirSync(dir)).toEqual(["p2prc"]);
  expect(existsSync(join(dir, "node_modules"))).toBe(false);
  expect(statSync(bin).mode & 0o111).not.toBe(0);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Result {
  code: number;
  out: string;
  err: string;
}

/** Runs ./p2prc in its own dir with a minimal env (no node_modules, no NODE_PATH, home under dir). */
function p2prc(args: string[], env: Record<string, string> = {}): Result {
  const r = Bun.spawnSync(["./p2prc", ...args], {
    cwd: dir,
    env: { PATH: "/usr/bin:/bin", HOME: dir, P2PRC: home, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

describe("compiled binary", () => {
  test("-h exits 0 and prints the flags", () => {
    const r = p2prc(["-h"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("--as-server");
    expect(r.out).toContain("--dc");
  });

  test("--bogus exits 2 with a message on stderr", () => {
    const r = p2prc(["--bogus"]);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err.split("\n")[0]).toBe("p2prc: unknown flag --bogus");
  });

  test("--dc creates config.json, identity/node.key (0600) and state.db", () => {
    const r = p2prc(["--dc"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/node id: [0-9a-f]{64}\n/);
    const config = JSON.parse(readFileSync(join(home, "config.json"), "utf8"));
    expect(config.serverPort).toBe(8088);
    expect(statSync(join(home, "identity", "node.key")).mode & 0o777).toBe(0o600);
    expect(existsSync(join(home, "state.db"))).toBe(true);
    // nothing leaked into the working directory
    expect(readdirSync(dir).sort()).toEqual(["home", "p2prc"]);
  });

  test("a second --dc keeps the node id and an edited field", () => {
    const first = JSON.parse(p2prc(["--dc", "--json"]).out);
    const path = join(home, "config.json");
    const config = JSON.parse(readFileSync(path, "utf8"));
    config.machineName = "edited-by-hand";
    delete config.maxContainers;
    writeFileSync(path, JSON.stringify(config));

    const r = p2prc(["--dc", "--json"]);
    expect(r.code).toBe(0);
    const second = JSON.parse(r.out);
    expect(second.nodeId).toBe(first.nodeId);
    expect(second.added).toEqual(["maxContainers"]);
    const after = JSON.parse(readFileSync(path, "utf8"));
    expect(after.machineName).toBe("edited-by-hand");
    expect(after.maxContainers).toBe(10);
  });

  test("--vc --json is valid JSON with the node id", () => {
    const r = p2prc(["--vc", "--json"]);
    expect(r.code).toBe(0);
    const v = JSON.parse(r.out);
    expect(v.nodeId).toMatch(/^[0-9a-f]{64}$/);
    expect(v.home).toBe(home);
    expect(v.machineName).toBe("edited-by-hand");
  });

  test("P2PRC_SERVER_PORT=abc --vc exits 2 with one stderr line naming serverPort, no stack", () => {
    const r = p2prc(["--vc"], { P2PRC_SERVER_PORT: "abc" });
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    const lines = r.err.split("\n").filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toStartWith("p2prc: ");
    expect(lines[0]).toContain("serverPort");
    expect(lines[0]).toContain("P2PRC_SERVER_PORT");
    expect(r.err).not.toMatch(/\bat .*\.(ts|js):\d+/);
  });

  test("--doctor reaches the engine (the engine client is embedded and loads)", () => {
    const r = p2prc(["--doctor"], { DOCKER_HOST: process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock" });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("reachable");
  });

  test("--as-server serves TLS with its own certificate (made by the embedded x509 library), stops on SIGTERM", async () => {
    const port = await freePort();
    const proc = Bun.spawn(["./p2prc", "--as-server"], {
      cwd: dir,
      env: {
        PATH: "/usr/bin:/bin",
        HOME: dir,
        P2PRC: home,
        P2PRC_SERVER_HOST: "127.0.0.1",
        P2PRC_SERVER_PORT: String(port),
        P2PRC_LOG_LEVEL: "warn",
        DOCKER_HOST: process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock",
      },
      stdout: "ignore",
      stderr: "pipe",
    });
    const spawnedAt = performance.now();
    const rssFileKb = () =>
      Number(/RssFile:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"))?.[1]);
    try {
      const certFile = join(home, "identity", "tls.crt");
      const health = await waitFor(
        "binary server up over TLS",
        async () => {
          if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}`);
          if (!existsSync(certFile)) return undefined;
          const tls = { ca: readFileSync(certFile, "utf8"), checkServerIdentity: () => undefined };
          const res = await fetch(`https://127.0.0.1:${port}/v1/health`, { tls });
          return res.ok ? ((await res.json()) as { nodeId: string }) : undefined;
        },
        15_000,
      );
      expect(health.nodeId).toMatch(/^[0-9a-f]{64}$/);
      const upFileKb = process.platform === "linux" ? rssFileKb() : 0;
      // the node ran itself again with its allocator setting (cli/allocator.ts): the same process
      if (process.platform === "linux") {
        const environ = readFileSync(`/proc/${proc.pid}/environ`, "utf8").split("\0");
        for (const [k, v] of Object.entries(NODE_ALLOCATOR_ENV)) expect(environ).toContain(`${k}=${v}`);
      }
      expect((statSync(join(home, "identity", "tls.key")).mode & 0o777).toString(8)).toBe("600");
      await expect(fetch(`https://127.0.0.1:${port}/v1/health`)).rejects.toThrow(); // not pinned
      // the dashboard's pages, stylesheet and script are embedded: `p2prc ui`'s link opens them
      const tls = { ca: readFileSync(certFile, "utf8"), checkServerIdentity: () => undefined };
      const link = p2prc(["ui"], { P2PRC_SERVER_PORT: String(port) });
      expect(link.code).toBe(0);
      expect(link.out.trim()).toMatch(
        new RegExp(`^https://127\\.0\\.0\\.1:${port}/ui/login\\?token=[0-9a-f]{64}$`),
      );
      const login = await fetch(link.out.trim(), { tls, redirect: "manual" });
      expect(login.status).toBe(303);
      const setCookie = login.headers.get("set-cookie") ?? "";
      expect(setCookie).toContain("Secure");
      const cookie = setCookie.split(";")[0] as string;
      const asset = async (path: string) => {
        const res = await fetch(`https://127.0.0.1:${port}${path}`, { tls, headers: { cookie } });
        return { status: res.status, text: await res.text() };
      };
      expect((await asset("/ui/assets/app.js")).text).toContain("EventSource");
      expect((await asset("/ui/assets/app.css")).text).toContain(".grid");
      expect((await asset("/ui/nodes")).text).toContain("<h1>Nodes</h1>");
      const metrics = await fetch(`https://127.0.0.1:${port}/metrics`, { tls });
      expect(await metrics.text()).toContain("p2prc_build_info{");
      if (process.platform === "linux") {
        // start-up's code pages given back once the node is up (cli/pages.ts): tens of MB of the
        // executable's resident pages, and the node still answers
        await Bun.sleep(Math.max(0, TRIM_FIRST_MS + 2000 - (performance.now() - spawnedAt)));
        expect(upFileKb - rssFileKb()).toBeGreaterThan(10 * 1024);
        expect((await fetch(`https://127.0.0.1:${port}/v1/health`, { tls })).status).toBe(200);
      }
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      const stderr = await new Response(proc.stderr).text();
      expect(stderr).not.toContain("reconcile failed");
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    }
  }, 30_000);
});
