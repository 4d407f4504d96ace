// Gossip's cost as the network grows (issue 12), in three parts:
//   S. Simulation of the pure sync core (p2p/gossip-sim.ts) on an in-memory network with a ManualClock,
//      N = 100, 1,000, 10,000: rounds until a new record version reaches every node, and bytes a node
//      sends per round while it spreads and once tables are equal again. Beyond one machine.
//   P. Real nodes, each in its own process (this file with --node, answering the parent on stdin/stdout
//      in process: no signed polling of its own), on loopback, TLS, gossiping every second, every node
//      bootstrapped from the first; N = 10, 50, 100 (P2PRC_GOSSIP_SIZES): discovery (all up → every
//      table full), convergence (tables full and the network steady, the first node signs a new version
//      → every node holds it), then each node's CPU per round (from /proc: all threads and the JS
//      thread) and each node's RSS (idle, N - 1 peers); also the RSS of one node alone. The node binary
//      is dropped from the page cache before it runs (as bench/startup's goal figure). Knobs:
//      P2PRC_GOSSIP_WAVE (nodes join k at a time), P2PRC_GOSSIP_FANOUT (the nodes' gossipFanout, 3),
//      P2PRC_GOSSIP_TRACE=1 (a line every 10 s of discovery: tables full, exchanges and failures, load).
//      When tables do not fill, it prints where they fall short, what failed, and the least-held nodes'
//      own side (their table, rounds, seeds and last log lines) against how the others hold them.
//      Each row also prints its window's exchanges per node-round and the CPU of each thread by name.
//      P2PRC_GOSSIP_JSPROF=dir: JavaScriptCore's sampling profiler on nodes 1–3 of the largest network
//      and of the one beside it, over the side-by-side window (self and inclusive samples by function,
//      a file each; its thread's CPU then counts in the figures: for finding, not for measuring).
//   I. The same nodes' gossip in one process (real tables on state.db files, in-memory network, no
//      TLS): CPU per node per round at N = 10, 50, 100, apart from the machine's load and the transport;
//      every size runs as many nodes in the process (N = 10: ten networks of 10; see inCopies).
//      It runs under the binary's JIT policy (the Makefile's --compile-jit-policy), as P's nodes do:
//      interpreted, a pass over the table costs what it costs a node. P2PRC_GOSSIP_JIT=k sets another
//      (and sets it in P's nodes run from source, P2PRC_GOSSIP_SOURCE=1).
// Goals: S rounds grow as log N, steady bytes per node flat; P CPU per node per round flat from the
// smallest N to the largest (ratio ≤ 1.2), N = 100 converges within 5 s, idle RSS with 99 peers ≤ 60 MB.
// Run: [P2PRC_GOSSIP_PARTS=SIP] node_modules/.bin/bun bench/gossip.ts [--quick] [--no-processes] (--quick: the simulation to
// N = 1,000, I at N = 5 and 10, P at N = 5: a smoke run; --no-processes: S and I only). No container engine is needed (the nodes only warn).
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { start } from "../abstractions/index.ts";
import { execWithNodeAllocator } from "../cli/allocator.ts";
import { keepExecutableTrimmed, TRIM_FIRST_MS } from "../cli/pages.ts";
import {
  generateIdentity,
  loadOrCreateTlsCertificate,
  memoryLogger,
  pinnedTls,
  verifySignature,
} from "../core/index.ts";
import type { GossipStats } from "../p2p/gossip.ts";
import { simulate } from "../p2p/gossip-sim.ts";
import { liveIds, Net, type TestNode } from "../p2p/test-net.ts";
import { POOLED_PEERS, SESSION_IDLE_MS } from "../p2p/transport.ts";
import { freePorts } from "../server/index.ts";
import { openStore } from "../store/index.ts";
import { buildFlags, profiled } from "./lib.ts";

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};

// the whole bench runs with the allocator setting of `p2prc --as-server` (cli/allocator.ts): I's nodes
// share this process, and P's children inherit it; a run whose environment names its own keeps it
// (MIMALLOC_PURGE_HOLES_MIN_INTERVAL=100: mimalloc's default)
if (!process.argv.includes("--node") && !process.argv.includes("--floor")) await execWithNodeAllocator();

// ---- one node (a child process) -----------------------------------------------------------------

if (process.argv.includes("--node")) {
  if (process.env.P2PRC_GOSSIP_JIT) Bun.unsafe.setJITPolicy(Number(process.env.P2PRC_GOSSIP_JIT));
  const n = Number(arg("--expect"));
  const logger = memoryLogger();
  const node = await start({
    configDir: arg("--dir") as string,
    env: {},
    logger,
    gpus: async () => [],
    reconcileIntervalMs: 600_000,
    overrides: {
      serverHost: "127.0.0.1",
      serverPort: Number(arg("--port")),
      machineName: `n${arg("--index")}`,
      bootstrap: arg("--seed") ? [arg("--seed") as string] : [],
      gossipIntervalMs: 1000,
      gossipFanout: Number(process.env.P2PRC_GOSSIP_FANOUT ?? 3),
      suspectTimeoutMs: 5000,
      logLevel: "error",
      openNetwork: true,
    },
  });
  const say = (o: object) => console.log(JSON.stringify(o));
  say({ started: true });
  keepExecutableTrimmed(); // as `p2prc --as-server` does (cli/commands/server.ts)
  // What the parent asks, on stdin, answered in process (no signed request: the bench's own polling of
  // /v1/p2p/table, ~140 KB of JSON a node 4 times a second at N = 100, was load of its own while the
  // nodes discovered each other). A check every 50 ms runs only while there is something to notice.
  let watching: { id: string; version: number } | undefined;
  let full = false;
  let check: ReturnType<typeof setInterval> | undefined;
  const look = () => {
    if (!full && node.table.size() >= n) {
      full = true;
      say({ full: true });
    }
    if (watching && (node.table.record(watching.id)?.record.version ?? 0) >= watching.version) {
      watching = undefined;
      say({ seen: true });
    }
    if (full && !watching) {
      clearInterval(check);
      check = undefined;
    }
  };
  /** What `why` and `dump` read as a failure in a logged line. */
  const failure = /fail|unreachable|timed out|refused|dead|left/;
  /** The last lines logged before `why` last cleared them. */
  let recent: string[] = [];
  const looking = () => {
    check ??= setInterval(look, 50);
  };
  looking();
  void (async () => {
    for await (const line of console) {
      const [verb, a, b] = line.trim().split(" ");
      if (verb === "rounds") {
        say({ rounds: node.gossip.stats.rounds });
        logger.lines.length = 0; // what the node logged is read by `why` alone: not kept for ever
      } else if (verb === "why") {
        // what went wrong since the last ask, by kind (ids, addresses and numbers left out)
        const kinds = new Map<string, number>();
        for (const line of logger.lines) {
          if (!failure.test(line)) continue;
          const kind = line
            .replace(/[0-9a-f]{12,}/g, "<id>")
            .replace(/\d+/g, "N")
            .slice(0, 140);
          kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
        }
        recent = logger.lines.slice(-40); // for `dump`
        logger.lines.length = 0;
        say({ why: Object.fromEntries(kinds) });
      } else if (verb === "dump") {
        // one node's side of a table that does not fill: its lateness, its rows by state, how it holds
        // the node `a` (an id's first 12 characters), and its last failures as logged (ids kept)
        const g = node.gossip as unknown as {
          lagMs(): number;
          suspects: Set<string>;
          backoff: Map<string, number>;
          running: Promise<void> | undefined;
          window: { value: number };
          deps: { peers: { seeds(): unknown[] } };
        };
        const table = node.table as unknown as {
          live(): { id: string; state: string }[];
          dead(): { id: string }[];
        };
        const rows = [...table.live(), ...table.dead().map((d) => ({ id: d.id, state: "dead" }))];
        const states: Record<string, number> = {};
        for (const r of rows) states[r.state] = (states[r.state] ?? 0) + 1;
        const of = a ? (rows.find((r) => r.id.startsWith(a))?.state ?? "absent") : undefined;
        const logged = [...recent, ...logger.lines];
        const lines = logged.filter((l) => failure.test(l));
        say({
          dump: {
            self: node.nodeId.slice(0, 12),
            lagMs: Math.round(g.lagMs()),
            suspects: g.suspects.size,
            backoff: [...g.backoff.values()].reduce((t, v) => t + v, 0),
            states,
            of,
            rounds: node.gossip.stats.rounds,
            running: !!g.running,
            window: g.window.value,
            seeds: g.deps.peers.seeds(),
            lines: [...lines.slice(-25), "-- last lines --", ...logged.slice(-12)].map((l) =>
              l.slice(0, 220),
            ),
          },
        });
      } else if (verb === "profile") {
        // P2PRC_GOSSIP_JSPROF: JavaScriptCore's sampling profiler over the next `a` ms of this node's
        // JS thread (the steady window), its report written to `b`
        await profiled(() => Bun.sleep(Number(a)), b as string);
        say({ profiled: b });
      } else if (verb === "mem") {
        const m = process.memoryUsage();
        say({ mem: { heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external } });
      } else if (verb === "stats") {
        // the table behind start()'s narrow type: its live rows (alive and suspect)
        const table = node.table as unknown as { live(): { id: string; state: string }[] };
        const live = table.live();
        const ids = live.filter((r) => r.state === "alive").map((r) => r.id.slice(0, 12));
        say({
          stats: {
            ...node.gossip.stats,
            size: node.table.size(),
            live: live.length,
            self: node.nodeId.slice(0, 12),
          },
          ids,
        });
      } else if (verb === "publish") {
        await node.gossip.refreshSelf(true);
        say({ published: node.table.record(node.nodeId)?.record.version, id: node.nodeId });
      } else if (verb === "watch") {
        watching = { id: a as string, version: Number(b) };
        looking();
      }
    }
  })();
  process.on("SIGTERM", async () => {
    await node.stop();
    process.exit(0);
  });
  await new Promise(() => {});
}

// ---- the floor (a child process): what a round's traffic costs with nothing of p2prc around it -----

// Each floor node serves TLS (its own certificate, as a node's) and every second POSTs an exchange-sized
// JSON body, Ed25519-signed, to `fanout` random peers (of at most POOLED_PEERS) over keep-alive sessions
// pinned to their certificates; the server verifies the signature and answers a small JSON. The same traffic as a
// gossip round at equal tables, signing and TLS included: the least any node can spend per round.
if (process.argv.includes("--floor")) {
  const n = Number(arg("--expect"));
  const dir = arg("--dir") as string;
  const ports = (arg("--ports") as string).split(",").map(Number);
  const index = Number(arg("--index"));
  const tls = await loadOrCreateTlsCertificate(join(dir, String(index)), "floor");
  const identity = generateIdentity();
  Bun.serve({
    hostname: "127.0.0.1",
    port: ports[index],
    idleTimeout: 180, // as a node's server (server/node.ts), and the client's sessions as a node's
    tls: { cert: tls.certPem, key: tls.keyPem },
    async fetch(req) {
      const text = await req.text();
      const id = req.headers.get("x-id") ?? "";
      const ok = verifySignature(id, text, req.headers.get("x-signature") ?? "");
      return Response.json({ same: ok, got: 1, observed: "127.0.0.1:1" });
    },
  });
  console.log(JSON.stringify({ started: true }));
  for await (const line of console) if (line.trim() === "go") break;
  const certs = ports.map((_, i) => readFileSync(join(dir, String(i), "tls.crt"), "utf8"));
  const sessions = new Map<number, Bun.FetchSession>();
  const session = (i: number) => {
    let s = sessions.get(i);
    if (!s) {
      s = new Bun.FetchSession({
        tls: pinnedTls(certs[i] as string),
        keepAlive: { idleTimeout: SESSION_IDLE_MS / 1000 },
      });
      sessions.set(i, s);
    }
    return s;
  };
  const body = JSON.stringify({
    hash: "0".repeat(64),
    known: "1".repeat(64),
    have: 1,
    held: 1,
    pad: "x".repeat(300),
  });
  const post = (j: number) => {
    const headers = {
      "content-type": "application/json",
      "x-id": identity.nodeId,
      "x-signature": identity.sign(body),
    };
    return session(j)
      .fetch(`https://127.0.0.1:${ports[j]}/v1/p2p/exchange`, {
        method: "POST",
        body,
        headers,
        signal: AbortSignal.timeout(800),
      } as BunFetchRequestInit)
      .then((r) => r.json())
      .catch(() => {});
  };
  // the peers it contacts: all of them, or the POOLED_PEERS after it (as a node's try order keeps a window
  // of them: Bun's keep-alive pool holds 64 connections, p2p/transport.ts), so no exchange reconnects; a
  // session to each first (a node's are open once it has contacted each: the window measures rounds, not
  // handshakes)
  const contacts = Math.min(n - 1, POOLED_PEERS);
  for (let j = 1; j <= contacts; j++) await post((index + j) % n);
  console.log(JSON.stringify({ warm: true }));
  const perSecond = Number(arg("--fanout") ?? 3);
  setInterval(() => {
    for (let k = 0; k < perSecond; k++) void post((index + 1 + Math.floor(Math.random() * contacts)) % n);
  }, 1000);
  await new Promise(() => {});
}

// ---- S: the simulation ----------------------------------------------------------------------------

const QUICK = process.argv.includes("--quick");
/** Which parts run (P2PRC_GOSSIP_PARTS, default all three): e.g. "P" for the processes alone. */
const PARTS = process.env.P2PRC_GOSSIP_PARTS ?? "SIP";
const fmt = (x: number, d = 0) => x.toFixed(d);

if (PARTS.includes("S")) {
  console.log("S  simulation of the sync core: one new record version spreading; fanout 3, 1 s rounds");
  console.log(
    "   N        rounds  log2 N  spread per round                         B/node/round spreading  steady",
  );
  const sim = (QUICK ? [100, 1000] : [100, 1000, 10_000]).map((nodes) => simulate({ nodes, seed: 1 }));
  for (const r of sim) {
    console.log(
      `   ${String(r.nodes).padEnd(8)} ${String(r.rounds).padEnd(7)} ${fmt(Math.log2(r.nodes), 1).padEnd(7)} ${r.spread.join(" ").padEnd(40)} ${fmt(r.bytesPerNodeRoundSpreading).padStart(10)}              ${fmt(r.bytesPerNodeRoundSteady)}`,
    );
  }
  const first = sim[0] as (typeof sim)[number];
  const last = sim.at(-1) as (typeof sim)[number];
  const roundsPerLog = sim.map((r) => r.rounds / Math.log2(r.nodes));
  console.log(
    `   rounds / log2 N: ${roundsPerLog.map((x) => x.toFixed(2)).join(", ")} (log growth: ${Math.max(...roundsPerLog) <= 1 ? "met" : "MISSED"}); steady bytes N=${last.nodes} / N=${first.nodes}: ${(last.bytesPerNodeRoundSteady / first.bytesPerNodeRoundSteady).toFixed(2)} (flat: ${last.bytesPerNodeRoundSteady / first.bytesPerNodeRoundSteady <= 1.1 ? "met" : "MISSED"})`,
  );
  console.log(
    "   while a change spreads, each exchange between differing tables carries the whole digest (~30 B a node): bytes per node grow with N there",
  );
}

// ---- I: gossip's own CPU, in one process ---------------------------------------------------------

// Real GossipService, PeerTable and state.db files, the routes in process, an in-memory network (no TLS,
// no signing) and a ManualClock: what gossip itself costs a node per round, apart from the machine's
// load and the transport. Nodes seeded from the first; rounds until every table is full, then a window.
const IN_SIZES = QUICK ? [5, 10] : (process.env.P2PRC_GOSSIP_IN_SIZES ?? "10,50,100").split(",").map(Number);
/**
 * How many networks of `n` nodes a size runs in the process: as many as make the largest size's node
 * count (N = 10: ten networks of 10; N = 100: one), so every size's windows run in a process holding as
 * many nodes, SQLite files and heaps. One network of 10 against one of 100 compared a process of 10
 * nodes with one of 100 (100 tables of 100 rows: ten times the memory every round walks through the
 * caches), which no node of a real network pays (P: a process a node). The same code read 1.26 that way
 * and 1.15, 1.09 this way (N = 10 alone 0.183 ms a node-round, among 100 nodes 0.212–0.224 ms; N = 100
 * 0.230–0.244 ms either way).
 */
const inCopies = (n: number) => Math.max(1, Math.round(Math.max(...IN_SIZES) / n));
/**
 * Rounds per window: whole minutes of the ManualClock (each holds exactly one of each node's write-behind
 * flushes, p2p/table.ts FLUSH_MS): one minute, ~6,000 node-rounds at every N with the copies above.
 * Windows of 1,000 node-rounds (100 rounds at N = 10, 10 at N = 100) held one or two flushes at N = 10
 * and none in four of five windows at N = 100 (every node's flush falls in the same round there), and
 * lasted ~0.2 s at N = 10: a few of /proc's 10 ms ticks.
 */
const inRounds = (n: number) => (QUICK ? 3 : Math.max(60, 60 * Math.ceil(100 / (n * inCopies(n)))));
/**
 * CPU seconds of this process's main thread (Linux): gossip's own work, not the GC's helper threads;
 * from schedstat (nanoseconds), not stat's 10 ms ticks.
 */
const mainThreadCpu = () =>
  Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8").split(" ")[0]) / 1e9;
if (PARTS.includes("I")) {
  const shipped = /--compile-jit-policy=(\d+)/.exec(buildFlags(join(import.meta.dir, "..")).join(" "))?.[1];
  Bun.unsafe.setJITPolicy(Number(process.env.P2PRC_GOSSIP_JIT ?? shipped ?? 1));
  console.log(
    "I  gossip in one process: real tables on state.db files, in-memory network, ManualClock, the binary's JIT policy; CPU per node per round",
  );
  console.log(
    `   N     rounds to converge  CPU/node/round  (all threads: with the GC's helpers); each size ${Math.max(...IN_SIZES)} nodes in all (a smaller N: as many networks of N)`,
  );
  const inRows: { n: number; ms: number }[] = [];
  {
    const dir = mkdtempSync(join(tmpdir(), "p2prc-gossip-in-"));
    const WINDOWS = 5;
    try {
      // every size's network first (the first size again, unreported: the JIT's warm-up is no node's
      // cost), then the windows interleaved (N = 10, 50, 100, 10, 50, …) so that the machine's load
      // falls on every size alike; the median window of each size
      const nets = [IN_SIZES[0] as number, ...IN_SIZES].map((n, k) => {
        const groups = Array.from({ length: inCopies(n) }, (_, c) => {
          const net = new Net();
          const nodes = Array.from({ length: n }, (_, i) =>
            // the store asks SQLite whether another connection wrote at most every 250 ms of the
            // network's clock, as a real node does on its own: on the wall clock (rounds of ~0.2 ms, every
            // node's in turn) a node asked about once every ~100 of its rounds at N = 10 and every ~10 at
            // N = 100, a cost that grew with N here only
            net.add(`node-${i}`, {
              store: openStore(join(dir, `${k}-${n}-${c}-${i}.db`), { now: () => net.clock.now() }),
            }),
          );
          const firstNode = nodes[0] as TestNode;
          for (const node of nodes.slice(1))
            node.store.peers.addSeed("127.0.0.1", firstNode.port, true, net.clock.now());
          return { net, nodes };
        });
        return { k, n, groups, converge: 0, windows: [] as { all: number; main: number }[] };
      });
      /** One round of every node of every network of a size, then a second of each network's clock. */
      const roundAll = async (x: (typeof nets)[number]) => {
        for (const g of x.groups) {
          await g.net.rounds(g.nodes);
          g.net.clock.advance(1000);
        }
      };
      for (const x of nets) {
        const full = () => x.groups.every((g) => g.nodes.every((node) => liveIds(node).length === x.n));
        while (x.converge < 60 && !full()) {
          await roundAll(x);
          x.converge++;
        }
        // settle: until every node has contacted every peer once (a peer's first latency is written to
        // SQLite at once, later ones with the minute's flush: a one-time cost per peer, which fell into
        // the windows at N = 100, where a quiet round's one contact takes ~100 rounds to reach every
        // peer, and not at N = 10), and a few rounds more
        const unmeasured = () =>
          x.groups.some((g) =>
            g.nodes.some((node) =>
              node.table.live().some((row) => row.id !== node.identity.nodeId && row.latencyMs == null),
            ),
          );
        for (let r = 0; r < 400 && unmeasured(); r++) await roundAll(x);
        for (let r = 0; r < 3; r++) await roundAll(x);
      }
      for (let w = 0; w < WINDOWS; w++) {
        for (const x of nets) {
          const perWindow = inRounds(x.n);
          const nodeRounds = x.n * x.groups.length * perWindow;
          // the in-memory networks' logs of every request (for tests) go first: kept, they grew with the
          // rounds a size took to settle (~40,000 bodies at N = 100), and each collection marked them;
          // the garbage of the window before (another size's) is collected outside this one
          for (const g of x.groups) g.net.calls.length = 0;
          Bun.gc(true);
          const cpu0 = process.cpuUsage();
          const main0 = mainThreadCpu();
          const rounds = async () => {
            for (let r = 0; r < perWindow; r++) await roundAll(x);
          };
          const jsprof = process.env.P2PRC_GOSSIP_JSPROF;
          // the profile (for finding): the last window of each size
          if (jsprof && w === WINDOWS - 1 && x.k > 0) await profiled(rounds, join(jsprof, `i-n${x.n}.txt`));
          else await rounds();
          const used = process.cpuUsage(cpu0);
          x.windows.push({
            all: (used.user + used.system) / 1000 / nodeRounds,
            main: ((mainThreadCpu() - main0) * 1000) / nodeRounds,
          });
        }
      }
      const mid = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
      for (const x of nets) {
        for (const g of x.groups) for (const node of g.nodes) node.store.close();
        if (x.k === 0) continue;
        const ms = mid(x.windows.map((v) => v.main));
        inRows.push({ n: x.n, ms });
        console.log(
          `   ${String(x.n).padEnd(5)} ${String(x.converge).padEnd(19)} ${`${ms.toFixed(3)} ms`.padEnd(15)} ${mid(x.windows.map((v) => v.all)).toFixed(3)} ms`,
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const a = inRows[0] as { n: number; ms: number };
    const b = inRows.at(-1) as { n: number; ms: number };
    console.log(
      `   CPU per node per round N=${b.n} / N=${a.n}: ${(b.ms / a.ms).toFixed(2)} (goal ≤ 1.2: ${b.ms / a.ms <= 1.2 ? "met" : "MISSED"})`,
    );
  }
}

// ---- P: nodes in their own processes --------------------------------------------------------------

if (process.argv.includes("--no-processes") || !PARTS.includes("P")) process.exit(0);
const SIZES = QUICK ? [5] : (process.env.P2PRC_GOSSIP_SIZES ?? "10,50,100").split(",").map(Number);
/** After convergence, before the window: the JIT compiles a new node's hot paths for ~20 s (a start-up cost, not a round's). */
const STEADY_WAIT_MS = QUICK ? 3000 : Number(process.env.P2PRC_GOSSIP_SETTLE_MS ?? 20_000);
/**
 * At least until every node has contacted every peer once (a first latency is a write): ~N rounds, a
 * quiet round contacting one peer.
 */
const steadyWaitMs = (n: number) => Math.max(STEADY_WAIT_MS, (n + 5) * 1000);
const WINDOW_MS = QUICK ? 3000 : 10_000;
/** The largest N's window, with the smallest network measured beside it (see `kept`). */
const SIDE_BY_SIDE_MS = 3 * WINDOW_MS;
/** Seconds as a row prints them; a step that never completed (NaN) as a dash. */
const secs = (x: number, digits: number) => (Number.isNaN(x) ? "—" : `${x.toFixed(digits)} s`);
const DISCOVER_TIMEOUT_MS = 180_000;
/**
 * P2PRC_GOSSIP_WAVE=k: after the first node, nodes join k at a time, each wave up and given
 * P2PRC_GOSSIP_WAVE_PAUSE_MS (default 3000) before the next, as a network grows by joins; default 0: all
 * at once (every node starting and discovering 99 others at the same moment). Discovery is timed from
 * the last node up either way.
 */
const WAVE = Number(process.env.P2PRC_GOSSIP_WAVE ?? 0);
const WAVE_PAUSE_MS = Number(process.env.P2PRC_GOSSIP_WAVE_PAUSE_MS ?? 3000);
const CONVERGE_TIMEOUT_MS = 60_000;
const TRACE = !!process.env.P2PRC_GOSSIP_TRACE;
/** After the new version converged, before the CPU window: the rounds that spread it are full ones. */
const PUBLISH_SETTLE_MS = QUICK ? 2000 : 10_000;
const work = mkdtempSync(join(tmpdir(), "p2prc-gossip-"));

interface Child {
  proc: Bun.Subprocess<"pipe", "pipe", "inherit">;
  started: Promise<number>;
  full: Promise<number>;
  /** Resolves at the next message carrying `key` (with its time). */
  next: <K extends string>(key: K) => Promise<{ at: number; m: Record<string, unknown> }>;
  ask: (line: string) => void;
}

/**
 * How a node runs: this file built the way the Makefile builds the binary (bench/lib.ts buildFlags:
 * bytecode, the JIT policy that ships), so P measures what ships, not a source run whose JIT threads
 * compiled for ~20 s and then still took ~3 ms a second. P2PRC_GOSSIP_SOURCE=1 runs the source instead.
 * P2PRC_GOSSIP_PROFILE=dir profiles node 1 (BUN_OPTIONS, which a compiled binary reads too).
 */
const FROM_SOURCE = !!process.env.P2PRC_GOSSIP_SOURCE;
const nodeCommand = (() => {
  let built: string[] | undefined;
  return (): string[] => {
    if (FROM_SOURCE) return [process.execPath, import.meta.path];
    if (built) return built;
    const out = join(work, "gossip-node");
    const bun = join(import.meta.dir, "..", "node_modules", ".bin", "bun");
    const flags = buildFlags(join(import.meta.dir, ".."));
    const r = Bun.spawnSync([bun, "build", ...flags, import.meta.path, "--outfile", out], {
      stdout: "ignore",
      stderr: "pipe",
    });
    if (r.exitCode !== 0) throw new Error(`building the bench's node: ${r.stderr.toString().slice(-2000)}`);
    // out of the page cache, as bench/startup's goal figure (a binary read from disk, as after a reboot):
    // a file written just now sits there in large folios, and more of it counts as resident
    Bun.spawnSync(["dd", `if=${out}`, "iflag=nocache", "count=0", "status=none"]);
    built = [out];
    return built;
  };
})();

function spawnNode(dir: string, index: number, port: number, seed: string | undefined, n: number): Child {
  const args = [
    "--node",
    "--dir",
    join(dir, String(index)),
    "--index",
    String(index),
    "--port",
    String(port),
  ];
  return spawnChild([...args, "--expect", String(n), ...(seed ? ["--seed", seed] : [])], index === 1);
}

/** A floor node (see `--floor` above): `ports` are every floor node's, in index order. */
function spawnFloor(dir: string, index: number, ports: number[], fanout: number): Child {
  const args = [
    "--floor",
    "--dir",
    dir,
    "--index",
    String(index),
    "--ports",
    ports.join(","),
    "--fanout",
    String(fanout),
  ];
  return spawnChild([...args, "--expect", String(ports.length)], false);
}

function spawnChild(args: string[], profiled: boolean): Child {
  const [exe, ...script] = nodeCommand();
  const profile = process.env.P2PRC_GOSSIP_PROFILE;
  // the allocator setting comes with the environment (this bench ran itself again with it, see the top;
  // the floor's processes have it too: any node could)
  const env =
    profile && profiled
      ? { ...process.env, BUN_OPTIONS: `--cpu-prof-md --cpu-prof-dir=${profile}` }
      : undefined;
  const proc = Bun.spawn([exe as string, ...script, ...args], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
    ...(env ? { env } : {}),
  });
  const waiting = new Map<string, ((v: { at: number; m: Record<string, unknown> }) => void)[]>();
  const next = (key: string) =>
    new Promise<{ at: number; m: Record<string, unknown> }>((r) => {
      waiting.set(key, [...(waiting.get(key) ?? []), r]);
    });
  const child: Child = {
    proc,
    started: next("started").then((v) => v.at),
    full: next("full").then((v) => v.at),
    next,
    ask: (line) => {
      proc.stdin.write(`${line}\n`);
      proc.stdin.flush();
    },
  };
  void (async () => {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of proc.stdout) {
      text += decoder.decode(chunk);
      let nl = text.indexOf("\n");
      while (nl >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        nl = text.indexOf("\n");
        const m = JSON.parse(line) as Record<string, unknown>;
        const at = performance.now();
        for (const key of Object.keys(m)) {
          const rs = waiting.get(key) ?? [];
          waiting.delete(key);
          for (const r of rs) r({ at, m });
        }
      }
    }
  })();
  return child;
}

/** The CPU seconds (user + system) in a `/proc/…/stat` line (fields after the name, which may hold ") "). */
const statSeconds = (stat: string) => {
  const f = stat.slice(stat.lastIndexOf(") ") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
};
/** CPU seconds of one thread, from schedstat (nanoseconds; /proc's stat counts 10 ms ticks). */
const taskSeconds = (pid: number, tid: number | string) =>
  Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]) / 1e9;
/**
 * CPU seconds of a process (all threads, those that ended included: stat's ticks) and of its main thread
 * (the JS thread, not the JIT's, GC's or allocator's: schedstat).
 */
const cpuSeconds = (pid: number, task = "") =>
  task ? taskSeconds(pid, pid) : statSeconds(readFileSync(`/proc/${pid}/stat`, "utf8"));
/** CPU seconds of each of a process's threads, by thread id, with its name (`comm`: "HTTP Client", …). */
const threadSeconds = (pid: number): Map<string, { comm: string; s: number }> => {
  const out = new Map<string, { comm: string; s: number }>();
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim().replace(/\d+$/, "");
      out.set(t, { comm, s: taskSeconds(pid, t) });
    } catch {
      // a thread that ended meanwhile
    }
  }
  return out;
};
/**
 * Where the CPU went between two `threadSeconds` of each child, by thread name: ms per `per` (node-rounds
 * or node-seconds), busiest first. A thread that ended in between is left out (its time is lost with it).
 */
const threadsLine = (
  before: ReturnType<typeof threadSeconds>[],
  after: ReturnType<typeof threadSeconds>[],
  per: number,
) => {
  const total = new Map<string, number>();
  after.forEach((a, i) => {
    for (const [tid, { comm, s }] of a)
      total.set(comm, (total.get(comm) ?? 0) + s - (before[i]?.get(tid)?.s ?? 0));
  });
  return [...total]
    .filter(([, v]) => v > 0)
    .sort((x, y) => y[1] - x[1])
    .slice(0, 6)
    .map(([k, v]) => `${k} ${((v / Math.max(1, per)) * 1000).toFixed(2)}`)
    .join(", ");
};
const statusMb = (pid: number, field: string) =>
  Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) / 1024;
const rssMb = (pid: number) => statusMb(pid, "VmRSS");
/** A node's private memory (RssAnon) and its executable's resident pages (RssFile), as "a + f". */
const splitMb = (pids: number[]) =>
  `${median(pids.map((p) => statusMb(p, "RssAnon"))).toFixed(1)} + ${median(pids.map((p) => statusMb(p, "RssFile"))).toFixed(1)}`;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};
const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, Bun.sleep(ms).then(() => undefined)]) as Promise<T | undefined>;

let children: Child[] = [];
/** Stops `cs` and waits for them to exit. */
const stop = async (cs: Child[]) => {
  for (const c of cs) c.proc.kill("SIGTERM");
  await Promise.all(cs.map((c) => c.proc.exited));
};
/** Stops every child: the measured ones and the companions beside them (see `kept`, `keptFloor`). */
const stopAll = async () => {
  await stop([...children, ...kept, ...keptFloor]);
  children = [];
  kept = [];
  keptFloor = [];
};
process.on("SIGINT", () => void stopAll().then(() => process.exit(130)));

console.log(
  `P  real nodes, one process each (${FROM_SOURCE ? "run from source" : "compiled as the Makefile builds p2prc"}; TLS, 1 s rounds${WAVE > 0 ? `; nodes join ${WAVE} at a time, ${WAVE_PAUSE_MS / 1000} s apart` : "; all nodes start at once"}). discover: all up → every table full;`,
);
console.log(
  `   converge: a new version of one record published (tables full, then ≥ ${STEADY_WAIT_MS / 1000} s steady) → held by every node; CPU from /proc over ${WINDOW_MS / 1000} s (the largest N's, with the smallest beside it, ${SIDE_BY_SIDE_MS / 1000} s), ${PUBLISH_SETTLE_MS / 1000} s after`,
);
console.log("   (all threads, and the JS thread alone); load = the machine's 1-min load average at the row");
console.log(
  "   N     discover  converge  CPU/node/round  JS thread  CPU/node (% core)  idle RSS (median; private + executable)  load",
);
const printRow = (r: Row) =>
  console.log(
    `   ${String(r.n).padEnd(5)} ${secs(r.discoverS, 1).padEnd(9)} ${secs(r.convergeS, 2).padEnd(9)} ${`${r.cpuMsPerRound.toFixed(2)} ms`.padEnd(15)} ${`${r.mainMsPerRound.toFixed(2)} ms`.padEnd(10)} ${`${r.cpuPercent.toFixed(2)}%`.padEnd(18)} ${`${r.rssMb.toFixed(1)} MB (${r.rssSplit})`.padEnd(40)} ${r.load.toFixed(1)}`,
  );

interface Row {
  n: number;
  discoverS: number;
  convergeS: number;
  cpuMsPerRound: number;
  mainMsPerRound: number;
  cpuPercent: number;
  rssMb: number;
  rssSplit: string;
  load: number;
}
const rows: Row[] = [];
/** Asks every node `verb` (answered in process, see --node) and gives each answer's message, in order. */
const askAll = (cs: Child[], verb: string) =>
  Promise.all(
    cs.map((c) => {
      const r = c.next(verb.split(" ")[0] as string);
      c.ask(verb);
      return r.then((v) => v.m);
    }),
  );
const roundsOf = async (cs: Child[]) => (await askAll(cs, "rounds")).map((m) => Number(m.rounds));
const statsOf = async (cs: Child[]) => (await askAll(cs, "stats")).map((m) => m.stats as GossipStats);
/** A network of `n` nodes beside the measured ones (their own seed), once every table is full. */
async function spawnNetwork(dir: string, n: number): Promise<Child[]> {
  const ports = await freePorts(n, "127.0.0.1");
  const first = spawnNode(dir, 0, ports[0] as number, undefined, n);
  await first.started;
  const cs = [first, ...ports.slice(1).map((p, i) => spawnNode(dir, i + 1, p, `127.0.0.1:${ports[0]}`, n))];
  await Promise.all(cs.map((c) => c.full));
  return cs;
}
/** A floor of `n` processes, sending once every one is up and has a session to each of its peers. */
async function startFloor(n: number, dir: string): Promise<Child[]> {
  const ports = await freePorts(n, "127.0.0.1");
  const cs = ports.map((_, i) => spawnFloor(dir, i, ports, FLOOR_FANOUT));
  await Promise.all(cs.map((c) => c.started));
  const warm = Promise.all(cs.map((c) => c.next("warm")));
  for (const c of cs) c.ask("go");
  await warm;
  return cs;
}
/**
 * The floor at N: the same number of processes with a quiet round's traffic (see --floor), measured the
 * same way, just before that N's row: what the machine itself costs N processes. Run at the smallest and
 * the largest N (with a floor of the smallest beside it).
 */
async function measureFloor(n: number): Promise<void> {
  // the largest floor with one of the smallest N started with it, measured in the same window
  const beside = n === SIZES.at(-1) && SIZES.length > 1;
  // one after the other: ports are free when found, and taken only when a process listens
  children = await startFloor(n, join(work, `floor${n}`));
  keptFloor = beside ? await startFloor(SIZES[0] as number, join(work, "floor-beside")) : [];
  await Bun.sleep(QUICK ? 2000 : 5000);
  const withKept = keptFloor.length > 0;
  const sets = withKept ? [children, keptFloor] : [children];
  // a floor counts no rounds: its figures are per node-second
  const before = await Promise.all(sets.map((cs) => snapshot(cs, false)));
  await Bun.sleep(WINDOW_MS);
  const after = await Promise.all(sets.map((cs) => snapshot(cs, false)));
  sets.forEach((cs, k) => {
    const a = before[k] as Snapshot;
    const b = after[k] as Snapshot;
    const { cpu, main } = spent(a, b);
    const seconds = (cs.length * WINDOW_MS) / 1000;
    const f = { cpuMs: (cpu / seconds) * 1000, mainMs: (main / seconds) * 1000 };
    if (k === 0) {
      floors.set(n, f);
      console.log(
        `   floor, N=${n}: ${f.cpuMs.toFixed(2)} ms CPU per node-second (JS thread ${f.mainMs.toFixed(2)} ms), RSS ${median(cs.map((c) => rssMb(c.proc.pid))).toFixed(1)} MB: ${FLOOR_FANOUT} signed TLS POST${FLOOR_FANOUT === 1 ? "" : "s"} out a second over pinned keep-alive sessions (to ${Math.min(n - 1, POOLED_PEERS)} peers, each kept open), ~${FLOOR_FANOUT} in, verified; nothing else`,
      );
    } else {
      floorBeside = {
        small: cs.length,
        smallMs: f.cpuMs,
        largeMs: (floors.get(n) as { cpuMs: number }).cpuMs,
      };
      console.log(
        `         floor, N=${cs.length} in this same window, beside N=${n}: ${f.cpuMs.toFixed(2)} ms CPU per node-second (JS thread ${f.mainMs.toFixed(2)} ms)`,
      );
    }
    console.log(
      `         floor, N=${cs.length}${k === 0 ? "" : ` beside N=${n}`}, ms per node-second by thread: ${threadsLine(a.threads, b.threads, seconds)}`,
    );
  });
  await stopAll();
}
/** A floor of the smallest N, started with the largest floor; both floors' CPU measured in one window. */
let keptFloor: Child[] = [];
let floorBeside: { small: number; smallMs: number; largeMs: number } | undefined;
let aloneMb = 0;
/** The floor's traffic: a quiet round's (one exchange out, and about one in, a second). */
const FLOOR_FANOUT = Number(process.env.P2PRC_GOSSIP_FLOOR_FANOUT ?? 1);
const floors = new Map<number, { cpuMs: number; mainMs: number }>();
/**
 * A network of the smallest N, started with the largest (their nodes the same age: the JIT, reluctant by
 * the shipped policy, compiles a node's hot code over minutes) and measured in the same window; both
 * networks' CPU per node-round in it. A row measured alone depends on the machine's state as much as on
 * the nodes: at N = 10 the two cores idle between wake-ups, and the same floor cost 2.9 ms a node-second
 * in one run and 6.3 ms in the next (13:07 and 13:10, 30 November). Side by side, both sizes see the same
 * machine.
 */
let kept: Child[] = [];
let sideBySide: { small: number; smallMs: number; smallMainMs: number; largeMs: number } | undefined;
/**
 * What a window's figures are taken from, for each child: CPU (all threads, main thread), rounds (none
 * for floors, which count none), threads.
 */
const snapshot = async (cs: Child[], rounds = true) => ({
  cpu: cs.map((c) => cpuSeconds(c.proc.pid)),
  main: cs.map((c) => cpuSeconds(c.proc.pid, "main")),
  rounds: rounds ? await roundsOf(cs) : [],
  threads: cs.map((c) => threadSeconds(c.proc.pid)),
});
type Snapshot = Awaited<ReturnType<typeof snapshot>>;
const spent = (a: Snapshot, b: Snapshot) => {
  const sum = (k: "cpu" | "main" | "rounds") => b[k].reduce((t, x, i) => t + x - (a[k][i] as number), 0);
  return { cpu: sum("cpu"), main: sum("main"), rounds: sum("rounds") };
};
try {
  {
    // one node alone: its idle RSS
    const [port] = await freePorts(1, "127.0.0.1");
    const c = spawnNode(join(work, "alone"), 0, port as number, undefined, 1);
    children = [c];
    await c.started;
    await Bun.sleep(3000);
    const early = `${rssMb(c.proc.pid).toFixed(1)} MB (${splitMb([c.proc.pid])})`;
    // start-up's code pages are given back TRIM_FIRST_MS after start (cli/pages.ts)
    await Bun.sleep(TRIM_FIRST_MS + 5000 - 3000);
    aloneMb = rssMb(c.proc.pid);
    const split = splitMb([c.proc.pid]);
    await stopAll();
    console.log(
      `   one node alone: idle RSS ${aloneMb.toFixed(1)} MB after ${(TRIM_FIRST_MS + 5000) / 1000} s (private + executable pages: ${split} MB); ${early} at 3 s`,
    );
  }
  for (const n of SIZES) {
    if (n === SIZES[0] || n === SIZES.at(-1)) await measureFloor(n);
    const dir = join(work, `n${n}`);
    const ports = await freePorts(n, "127.0.0.1");
    const seed = `127.0.0.1:${ports[0]}`;
    const first = spawnNode(dir, 0, ports[0] as number, undefined, n);
    children = [first];
    await first.started;
    for (let i = 1; i < n; i++) {
      children.push(spawnNode(dir, i, ports[i] as number, seed, n));
      // in waves: this wave up, then a pause for it to be found, before the next joins
      if (WAVE > 0 && i % WAVE === 0) {
        await Promise.all(children.slice(-WAVE).map((c) => c.started));
        await Bun.sleep(WAVE_PAUSE_MS);
      }
    }
    const startedAt = await Promise.all(children.map((c) => c.started));
    // the companion's ports are found once these listen (a port found free is taken only then)
    if (n === SIZES.at(-1) && SIZES.length > 1)
      kept = await spawnNetwork(join(work, "beside"), SIZES[0] as number);
    const allUp = Math.max(...startedAt);
    let complete = 0;
    // P2PRC_GOSSIP_TRACE=1: every 10 s of discovery, how far it got and what it cost
    let last = { exchanges: 0, failures: 0, late: 0, t: allUp };
    const trace =
      TRACE &&
      setInterval(async () => {
        const st = (await askAll(children, "stats")).map((m) => m.stats as Record<string, number>);
        const sum = (k: string) => st.reduce((t, x) => t + (x[k] ?? 0), 0);
        const now = {
          exchanges: sum("exchanges"),
          failures: sum("failures"),
          late: sum("late"),
          t: performance.now(),
        };
        console.log(
          `      t=${((now.t - allUp) / 1000).toFixed(0)} s: ${complete} full, median live ${median(st.map((x) => x.live ?? 0))}; last ${((now.t - last.t) / 1000).toFixed(0)} s: ${now.exchanges - last.exchanges} exchanges, ${now.failures - last.failures} failed (${now.late - last.late} late); load ${loadavg()[0]?.toFixed(1)}`,
        );
        last = now;
      }, 10_000);
    const fullAt = await within(
      Promise.all(
        children.map((c) =>
          c.full.then((t) => {
            complete++;
            return t;
          }),
        ),
      ),
      DISCOVER_TIMEOUT_MS,
    );
    if (trace) clearInterval(trace);
    const discoverS = fullAt ? (Math.max(...fullAt) - allUp) / 1000 : Number.NaN;
    if (!fullAt) {
      type Stats = { s: Record<string, number>; ids: string[] };
      const ask = async () =>
        (await askAll(children, "stats")).map(
          (m): Stats => ({ s: m.stats as Record<string, number>, ids: m.ids as string[] }),
        );
      const stats = await ask();
      const sum = (xs: Stats[], k: string) => xs.reduce((t, x) => t + (x.s[k] ?? 0), 0);
      console.log(
        `   N=${n}: ${complete} of ${n} tables full ${DISCOVER_TIMEOUT_MS / 1000} s after all were up (median table ${median(stats.map((x) => x.s.size ?? 0))}; all nodes: ${sum(stats, "rounds")} rounds, ${sum(stats, "exchanges")} exchanges, ${sum(stats, "failures")} failed, ${sum(stats, "late")} of them while late)`,
      );
      // who is missing where, and whether the failures go on
      const held = new Map<string, number>();
      for (const x of stats) for (const id of x.ids) held.set(id, (held.get(id) ?? 0) + 1);
      const counts = [...held.values()].sort((a, b) => a - b);
      const whys = async () => (await askAll(children, "why")).map((m) => m.why as Record<string, number>);
      await whys(); // from now on
      await Bun.sleep(20_000);
      const later = await ask();
      const kinds = new Map<string, number>();
      for (const w of await whys())
        for (const [k, v] of Object.entries(w)) kinds.set(k, (kinds.get(k) ?? 0) + v);
      for (const [k, v] of [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 6))
        console.log(`      ${v}× ${k}`);
      // the least-held nodes: their own side, and how every other node holds them
      const fewest = [...held].sort((a, b) => a[1] - b[1]).slice(0, 3);
      for (const [id] of fewest) {
        const dumps = (await askAll(children, `dump ${id}`)).map((m) => m.dump as Record<string, unknown>);
        const own = dumps.find((d) => d.self === id);
        const views = new Map<string, number>();
        for (const d of dumps) if (d !== own) views.set(String(d.of), (views.get(String(d.of)) ?? 0) + 1);
        console.log(
          `   ${id}: held by the others as ${JSON.stringify(Object.fromEntries(views))}; its own side:`,
        );
        console.log(`      ${JSON.stringify({ ...own, lines: undefined })}`);
        for (const l of (own?.lines as string[] | undefined) ?? []) console.log(`      | ${l}`);
      }
      const sizes = stats.map((x) => x.ids.length);
      console.log(
        `   N=${n}: alive rows per table min/median/max ${Math.min(...sizes)}/${median(sizes)}/${Math.max(...sizes)}; ids held alive by the fewest tables: ${counts.slice(0, 8).join(" ")} (of ${held.size} ids); in the next 20 s: ${sum(later, "exchanges") - sum(stats, "exchanges")} exchanges, ${sum(later, "failures") - sum(stats, "failures")} failed, ${later.filter((x) => (x.s.size ?? 0) >= n).length} tables full`,
      );
    }
    // one new version of the first node's record, in the steady network (discovery's last writes and
    // rounds done), timed from its signing to the last node holding it
    await Bun.sleep(steadyWaitMs(n));
    const pub = first.next("published");
    first.ask("publish");
    const { at: publishedAt, m } = await pub;
    let seen = 0;
    const seenAt = await within(
      Promise.all(
        children.slice(1).map((c) => {
          const s = c.next("seen").then((v) => {
            seen++;
            return v.at;
          });
          c.ask(`watch ${m.id} ${m.published}`);
          return s;
        }),
      ),
      CONVERGE_TIMEOUT_MS,
    );
    const convergeS = seenAt ? (Math.max(...seenAt) - publishedAt) / 1000 : Number.NaN;
    if (!seenAt)
      console.log(
        `   N=${n}: ${seen + 1} of ${n} nodes hold the new version after ${CONVERGE_TIMEOUT_MS / 1000} s`,
      );
    await Bun.sleep(PUBLISH_SETTLE_MS); // the rounds that spread it, over
    // the smallest network, started with this one (see `kept`), measured in this same window
    const withKept = n === SIZES.at(-1) && kept.length > 0;
    // side by side, a longer window: at N = 10 a 10 s one holds 100 node-rounds, and one thread's
    // burst (the JIT's) moved the figure by 10%
    const windowMs = withKept ? SIDE_BY_SIDE_MS : WINDOW_MS;
    const k0 = withKept ? await snapshot(kept) : undefined;
    const w0 = await snapshot(children);
    const s0 = await statsOf(children);
    if (process.env.P2PRC_GOSSIP_JSPROF) {
      const out = process.env.P2PRC_GOSSIP_JSPROF;
      for (const i of [1, 2, 3]) {
        children[i]?.ask(`profile ${windowMs - 500} ${join(out, `n${n}-${i}.txt`)}`);
        if (withKept)
          kept[i]?.ask(`profile ${windowMs - 500} ${join(out, `n${n}-beside-${kept.length}-${i}.txt`)}`);
      }
    }
    await Bun.sleep(windowMs);
    const w1 = await snapshot(children);
    const k1 = withKept ? await snapshot(kept) : undefined;
    const s1 = await statsOf(children);
    const { cpu, main, rounds } = spent(w0, w1);
    const [t0, t1] = [w0.threads, w1.threads];
    if (k0 && k1) {
      const k = spent(k0, k1);
      sideBySide = {
        small: kept.length,
        smallMs: (k.cpu / Math.max(1, k.rounds)) * 1000,
        smallMainMs: (k.main / Math.max(1, k.rounds)) * 1000,
        largeMs: (cpu / Math.max(1, rounds)) * 1000,
      };
      console.log(
        `         N=${kept.length} in this same window, beside N=${n}: ${sideBySide.smallMs.toFixed(2)} ms CPU per node-round (JS thread ${sideBySide.smallMainMs.toFixed(2)} ms), ${k.rounds} rounds; by thread: ${threadsLine(k0.threads, k1.threads, k.rounds)}`,
      );
    }
    rows.push({
      n,
      discoverS,
      convergeS,
      cpuMsPerRound: (cpu / Math.max(1, rounds)) * 1000,
      mainMsPerRound: (main / Math.max(1, rounds)) * 1000,
      cpuPercent: (cpu / n / (windowMs / 1000)) * 100,
      rssMb: median(children.map((c) => rssMb(c.proc.pid))),
      rssSplit: splitMb(children.map((c) => c.proc.pid)),
      load: loadavg()[0] as number,
    });
    printRow(rows.at(-1) as Row);
    // what the window's rounds did, network-wide per node-round: a quiet round is one exchange out and
    // ~one in, with equal hashes (a few hundred bytes each way)
    const delta = (k: keyof GossipStats) => s1.reduce((t, x, i) => t + x[k] - (s0[i] as GossipStats)[k], 0);
    const per = (k: keyof GossipStats) => (delta(k) / Math.max(1, rounds)).toFixed(2);
    console.log(
      `         N=${n} window: ${rounds} rounds; per node-round ${per("exchanges")} exchanges out, ${per("failures")} failed, ${per("bytesSent")} B sent, ${per("recordsReceived")} records received`,
    );
    console.log(`         N=${n}, ms per node-round by thread: ${threadsLine(t0, t1, rounds)}`);
    // where a node's private memory goes: the JS heap, what it holds outside (external), and its sockets
    const mems = (await askAll(children, "mem")).map(
      (m) => m.mem as { heapUsed: number; heapTotal: number; external: number },
    );
    const sockets = (pid: number) => {
      try {
        return readdirSync(`/proc/${pid}/fd`).filter((f) =>
          readlinkSync(`/proc/${pid}/fd/${f}`).startsWith("socket:"),
        ).length;
      } catch {
        return 0;
      }
    };
    const mb = (xs: number[]) => (median(xs) / 1048576).toFixed(1);
    console.log(
      `         N=${n} memory (median): JS heap ${mb(mems.map((m) => m.heapUsed))} MB used of ${mb(mems.map((m) => m.heapTotal))}, external ${mb(mems.map((m) => m.external))} MB; ${median(children.map((c) => sockets(c.proc.pid)))} sockets open`,
    );
    await stopAll();
  }
} finally {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}

const small = rows[0] as Row;
const large = rows.at(-1) as Row;
const overFloor = (r: Row | undefined) => {
  const f = r && floors.get(r.n);
  return f && r ? r.cpuMsPerRound / f.cpuMs : undefined;
};
for (const r of new Set([small, large])) {
  const f = r && floors.get(r.n);
  if (f && r)
    console.log(
      `   N=${r.n} against the floor at N=${r.n}: ${(r.cpuMsPerRound / f.cpuMs).toFixed(2)}× its CPU (JS thread ${(r.mainMsPerRound / f.mainMs).toFixed(2)}×)`,
    );
}
const a = overFloor(small);
const b = overFloor(large);
if (rows.length > 1 && a && b)
  console.log(
    `   p2prc's CPU over the floor, N=${large.n} / N=${small.n}: ${(b / a).toFixed(2)} (the machine's own cost of ${large.n} processes on ${navigator.hardwareConcurrency} cores taken out: floor N=${large.n} / N=${small.n} ${((floors.get(large.n)?.cpuMs ?? 0) / (floors.get(small.n)?.cpuMs ?? 1)).toFixed(2)})`,
  );
if (rows.length > 1) {
  const ratio = large.cpuMsPerRound / small.cpuMsPerRound;
  const unsettled = Number.isNaN(large.discoverS)
    ? ` (N=${large.n} never settled: its tables were still filling)`
    : "";
  console.log(
    `   CPU per node per round N=${large.n} / N=${small.n}, each row alone: ${ratio.toFixed(2)}${unsettled}${sideBySide ? "" : ` (goal ≤ 1.2: ${ratio <= 1.2 ? "met" : "MISSED"})`}`,
  );
  if (floorBeside)
    console.log(
      `   the floor's CPU per node-second N=${large.n} / N=${floorBeside.small}, side by side in one window: ${floorBeside.largeMs.toFixed(2)} / ${floorBeside.smallMs.toFixed(2)} ms = ${(floorBeside.largeMs / floorBeside.smallMs).toFixed(2)} (what the machine and the transport alone do with 10 times the peers)`,
    );
  if (sideBySide && floorBeside) {
    // what p2prc adds to the bare transport's cost, at each size: both taken side by side
    const small = sideBySide.smallMs - floorBeside.smallMs;
    const large = sideBySide.largeMs - floorBeside.largeMs;
    console.log(
      `   p2prc's CPU above the floor per node-round (a quiet round is one second), side by side: N=${floorBeside.small} ${small.toFixed(2)} ms, N=${SIZES.at(-1)} ${large.toFixed(2)} ms: ${(large / small).toFixed(2)}`,
    );
  }
  if (sideBySide) {
    const r = sideBySide.largeMs / sideBySide.smallMs;
    console.log(
      `   CPU per node per round N=${large.n} / N=${sideBySide.small}, side by side in one window: ${sideBySide.largeMs.toFixed(2)} / ${sideBySide.smallMs.toFixed(2)} ms = ${r.toFixed(2)}${unsettled} (goal ≤ 1.2: ${r <= 1.2 ? "met" : "MISSED"})`,
    );
  }
  // the largest N whose tables filled, for reference when the largest did not
  const settled = rows.filter((r) => !Number.isNaN(r.discoverS)).at(-1);
  if (unsettled && settled && settled !== small)
    console.log(
      `   CPU per node per round N=${settled.n} / N=${small.n}, the largest N that settled: ${(settled.cpuMsPerRound / small.cpuMsPerRound).toFixed(2)}`,
    );
}
if (large.n >= 100) {
  console.log(
    `   N=${large.n}: a new version held by every node ${Number.isNaN(large.convergeS) ? `not within ${CONVERGE_TIMEOUT_MS / 1000} s` : `${large.convergeS.toFixed(2)} s`} after it was signed (goal ≤ 5 s: ${large.convergeS <= 5 ? "met" : "MISSED"}); idle RSS ${large.rssMb.toFixed(1)} MB (goal ≤ 60 MB: ${large.rssMb <= 60 ? "met" : "MISSED"})`,
  );
}
process.exit(0);
