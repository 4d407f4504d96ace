// Start-up cost of the p2prc binary against an empty Bun binary, and the idle server's memory.
// Goals: each command ≤ 4× the empty binary's wall time; an idle server ≤ 60 MB RSS.
// Run: node_modules/.bin/bun bench/startup.ts (or `make bench`). Exits 77 when ./p2prc is missing.
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildFlags, cleanEnv } from "./lib.ts";

const ROOT = join(import.meta.dir, "..");
// P2PRC_STARTUP_BIN benches another build of p2prc (e.g. one built with other flags) against the same baseline.
const P2PRC = process.env.P2PRC_STARTUP_BIN ?? join(ROOT, "p2prc");
const BUN = join(ROOT, "node_modules", ".bin", "bun");
const WARMUPS = 3;
const RUNS = 30;
const STARTUP_GOAL = 4;
const RSS_GOAL_MB = 60;

if (!existsSync(P2PRC)) {
  console.log("startup: ./p2prc is missing (run `make build`); skipped");
  process.exit(77);
}

const work = mkdtempSync(join(tmpdir(), "p2prc-bench-"));
const home = join(work, "home");

const env = cleanEnv({ P2PRC: home });

function run(cmd: string[]): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync(cmd, { cwd: ROOT, env, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** A command that answers "not available yet" (exit 2) is a feature still being built. */
function notAvailable(r: { code: number; stderr: string }): boolean {
  return r.code === 2 && r.stderr.includes("not available yet");
}

/**
 * Median wall time in ms of each command over RUNS runs after WARMUPS, plus the last exit code seen. The
 * commands take turns (one run of each, then the next round), so a machine that gets busier or quieter
 * during the bench shifts every command alike instead of whichever happened to run then.
 */
function medianMsInterleaved(cmds: string[][]): { ms: number; code: number }[] {
  const times: number[][] = cmds.map(() => []);
  const codes: number[] = cmds.map(() => 0);
  for (let i = 0; i < WARMUPS + RUNS; i++) {
    for (const [k, cmd] of cmds.entries()) {
      const start = Bun.nanoseconds();
      const r = Bun.spawnSync(cmd, { cwd: ROOT, env, stdout: "ignore", stderr: "ignore" });
      const ms = (Bun.nanoseconds() - start) / 1e6;
      codes[k] = r.exitCode ?? -1;
      if (i >= WARMUPS) times[k]?.push(ms);
    }
  }
  return times.map((t, k) => {
    t.sort((a, b) => a - b);
    const mid = Math.floor(t.length / 2);
    const ms = t.length % 2 ? (t[mid] as number) : ((t[mid - 1] as number) + (t[mid] as number)) / 2;
    return { ms, code: codes[k] as number };
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function main(): Promise<void> {
  // The baseline: an empty program compiled with the Makefile's flags for p2prc.
  writeFileSync(join(work, "empty.ts"), "export {}\n");
  const empty = join(work, "empty");
  const flags = buildFlags(ROOT);
  const built = run([BUN, "build", ...flags, join(work, "empty.ts"), "--outfile", empty]);
  if (built.code !== 0) {
    console.log(`startup: could not compile the empty Bun program:\n${built.stderr.trim()}`);
    process.exitCode = 1;
    return;
  }
  const dc = run([P2PRC, "--dc"]);
  if (dc.code !== 0) {
    console.log(`startup: ./p2prc --dc failed (exit ${dc.code}): ${dc.stderr.trim()}`);
    process.exitCode = 1;
    return;
  }

  const cases: [string, string[]][] = [
    ["empty bun binary", [empty]],
    ["p2prc -h", [P2PRC, "-h"]],
    ["p2prc --vc", [P2PRC, "--vc"]],
    ["p2prc --ls", [P2PRC, "--ls"]],
  ];
  const rows: string[][] = [];
  const notes: string[] = [];
  const measured = cases.filter(([label, cmd]) => {
    if (!notAvailable(run(cmd))) return true;
    notes.push(`${label.replace(/^p2prc /, "")}: not available yet`);
    return false;
  });
  const results = medianMsInterleaved(measured.map(([, cmd]) => cmd));
  const base = results[0]?.ms ?? 0;
  for (const [k, [label]] of measured.entries()) {
    const { ms, code } = results[k] as { ms: number; code: number };
    const ratio = ms / base;
    const goal = k === 0 ? "(baseline)" : ratio <= STARTUP_GOAL ? "yes" : "NO";
    rows.push([label, ms.toFixed(1), `${ratio.toFixed(2)}×`, code === 0 ? goal : `${goal} (exit ${code})`]);
  }

  console.log(
    `startup: median wall time of ${RUNS} runs after ${WARMUPS} warm-ups, the commands taking turns (goal ≤ ${STARTUP_GOAL}× empty)`,
  );
  console.log(`empty binary: \`export {}\` built with bun build ${flags.join(" ")}`);
  const header = ["command", "median ms", "vs empty", "meets goal"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join("  ");
  console.log(fmt(header));
  for (const r of rows) console.log(fmt(r));
  for (const n of notes) console.log(n);

  await serverRss();
}

/** VmRSS, RssAnon and RssFile of a process, in MB. */
function rssOf(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, "m").exec(status)?.[1] ?? Number.NaN) / 1024;
  return { rss: field("VmRSS"), anon: field("RssAnon"), file: field("RssFile") };
}

interface Server {
  proc: ReturnType<typeof Bun.spawn>;
  port: number;
  stderr: () => string;
}

/** Starts `p2prc --as-server` for a home on a free loopback port; resolves once /v1/health answers (TLS pinned). */
async function startServer(
  bin: string,
  nodeHome: string,
  extra: Record<string, string>,
): Promise<Server | string> {
  const port = await freePort();
  const proc = Bun.spawn([bin, "--as-server"], {
    cwd: ROOT,
    env: cleanEnv({
      P2PRC: nodeHome,
      P2PRC_SERVER_PORT: String(port),
      P2PRC_SERVER_HOST: "127.0.0.1",
      ...extra,
    }),
    stdout: "ignore",
    stderr: "pipe",
  });
  let stderr = "";
  (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) stderr = (stderr + decoder.decode(chunk)).slice(-4000);
  })();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && proc.exitCode === null) {
    try {
      // the node serves TLS with its own certificate (the default): pin it from the node's home
      const certFile = join(nodeHome, "identity", "tls.crt");
      const tls = existsSync(certFile)
        ? { ca: readFileSync(certFile, "utf8"), checkServerIdentity: () => undefined }
        : undefined;
      const res = await fetch(`${tls ? "https" : "http"}://127.0.0.1:${port}/v1/health`, {
        signal: AbortSignal.timeout(1000),
        tls,
      });
      if (res.status === 200) return { proc, port, stderr: () => stderr };
    } catch {
      // not listening yet
    }
    await Bun.sleep(100);
  }
  const code = proc.exitCode ?? (await Promise.race([proc.exited, Bun.sleep(200).then(() => null)]));
  if (code === null) proc.kill("SIGKILL");
  return code === null
    ? `GET /v1/health on port ${port} did not answer 200 within 10 s`
    : `--as-server exited ${code} before answering: ${stderr.trim().split("\n").at(-1) ?? ""}`;
}

async function stopServer(s: Server): Promise<void> {
  if (s.proc.exitCode !== null) return;
  s.proc.kill("SIGTERM");
  const exited = await Promise.race([s.proc.exited, Bun.sleep(5000).then(() => null)]);
  if (exited === null) {
    console.log("server RSS: server did not stop within 5 s of SIGTERM; killed");
    s.proc.kill("SIGKILL");
    await s.proc.exited;
  }
}

/**
 * Drops `file` from the page cache (GNU dd's nocache: posix_fadvise DONTNEED on this file only), so the
 * next start reads it from disk as it would after a reboot. Returns false where dd cannot.
 */
function evict(file: string): boolean {
  return Bun.spawnSync(["dd", `if=${file}`, "iflag=nocache", "count=0", "status=none"]).exitCode === 0;
}

interface Idle {
  rss: number;
  anon: number;
  file: number;
  early: number;
  peers: number;
}

/**
 * Idle server memory of node A run from `bin`: A and a peer B that trust each other gossip every second
 * (the default interval) over TLS, and A reconciles with the engine every 5 s. A's VmRSS is read 2 s
 * after it answers and again after 15 s of this idle work (the steady state).
 */
async function idleRss(
  bin: string,
  peerHome: string,
  selfId: string,
  peerId: string,
): Promise<Idle | string> {
  const a = await startServer(bin, home, { P2PRC_TRUSTED: peerId });
  if (typeof a === "string") return a;
  const b = await startServer(P2PRC, peerHome, {
    P2PRC_TRUSTED: selfId,
    P2PRC_BOOTSTRAP: `127.0.0.1:${a.port}`,
  });
  try {
    if (typeof b === "string") return `the peer: ${b}`;
    await Bun.sleep(2000);
    const early = rssOf(a.proc.pid);
    await Bun.sleep(13_000);
    const idle = rssOf(a.proc.pid);
    const table = JSON.parse(run([P2PRC, "--ls", "--json"]).stdout) as { id: string }[];
    const peers = table.filter((r) => r.id === peerId).length;
    if (peers !== 1) return "the peer never reached the node's table";
    return { ...idle, early: early.rss, peers };
  } finally {
    if (typeof b !== "string") await stopServer(b);
    await stopServer(a);
  }
}

/**
 * The idle RSS twice: with ./p2prc read from disk (dropped from the page cache first, as after a
 * reboot: how a node started at boot runs), and from a copy written just now (as right after `make
 * install`). A freshly written file sits in the page cache in large folios, and the kernel maps a whole
 * folio on one fault, so more of the executable counts as resident until those pages are evicted.
 */
async function serverRss(): Promise<void> {
  const fresh = join(work, "p2prc-fresh");
  copyFileSync(P2PRC, fresh);
  const evicted = evict(P2PRC);
  const peerHome = join(work, "peer");
  const made = Bun.spawnSync([P2PRC, "--dc", "--json"], { cwd: ROOT, env: cleanEnv({ P2PRC: peerHome }) });
  const selfId = (JSON.parse(run([P2PRC, "--dc", "--json"]).stdout) as { nodeId: string }).nodeId;
  const peerId = (JSON.parse(made.stdout.toString()) as { nodeId: string }).nodeId;
  const runs: [string, string][] = [
    [
      evicted ? "binary read from disk (as after a reboot)" : "binary as cached now (dd could not evict it)",
      P2PRC,
    ],
    ["binary written just now (as right after make install)", fresh],
  ];
  console.log(
    `idle server RSS after 15 s, one peer gossiping over TLS every second (goal ≤ ${RSS_GOAL_MB} MB):`,
  );
  for (const [i, [label, bin]] of runs.entries()) {
    const r = await idleRss(bin, peerHome, selfId, peerId);
    if (typeof r === "string") {
      console.log(`server RSS: ${label}: ${r}`);
      process.exitCode = 1;
      return;
    }
    const goal = i === 0 ? `  goal: ${r.rss <= RSS_GOAL_MB ? "yes" : "NO"}` : "";
    // RssFile: pages of the executable itself (Bun's runtime and the module graph; file-backed, shared,
    // dropped first under memory pressure). RssAnon: the node's own memory.
    console.log(
      `  ${label.padEnd(54)} ${r.rss.toFixed(1)} MB (private RssAnon ${r.anon.toFixed(1)}, executable RssFile ${r.file.toFixed(1)}; ${r.early.toFixed(1)} MB at 2 s)${goal}`,
    );
  }
}

try {
  await main();
} finally {
  rmSync(work, { recursive: true, force: true });
}
