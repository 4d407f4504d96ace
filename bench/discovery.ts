// Discovery: N nodes in this one process on loopback (127.0.0.1, one port each), every node but the
// first bootstrapped from the first, gossiping every second. For N = 10, 25, 50:
//   convergence  time from the last node's start until every node's table (GET /v1/p2p/table) lists
//                all N, polled every 100 ms; with when the seed, the median node and the last node
//                were complete
//   steady state ~3 rounds after convergence, GET /v1/p2p/stats of every node twice, 5 s apart: mean
//                bytes sent and received per node per round (Δbytes / Δrounds), and this process's
//                CPU over that window (all N nodes together: the idle cost)
//   failure      a node (not the seed) is stopped; time until a first node marks it suspect, until a
//                first node drops it (declared dead: detection) and until no node's table lists it
//                (vanish). KILLS nodes, one after another; the table shows the median and the worst
// Goals: convergence ≤ 3 s at a 1 s interval; per-round bytes roughly flat as N grows (N=50 / N=10).
// Run: node_modules/.bin/bun bench/discovery.ts (or `make bench`). No container engine is needed (a
// node only warns when it has none); DOCKER_HOST, when set, is passed on so the first reconcile finds it.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { type RunningNode, start } from "../abstractions/index.ts";
import { createLogger, generateIdentity, type Logger, pinnedTls } from "../core/index.ts";
import type { GossipStats, PeerView } from "../p2p/index.ts";
import { signedFetch } from "../test/support.ts";

// P2PRC_DISCOVERY_SIZES=10,25 measures only those sizes.
const SIZES = (process.env.P2PRC_DISCOVERY_SIZES ?? "10,25,50").split(",").map(Number);
const INTERVAL_MS = 1000;
const SUSPECT_MS = 3000;
const POLL_MS = 100;
const CONVERGENCE_GOAL_S = 3;
/** Per-round bytes at the largest N over the smallest: "roughly flat". */
const FLAT_GOAL = 1.5;
const STEADY_WAIT_MS = 3 * INTERVAL_MS;
const STATS_WINDOW_MS = 5000;
const CONVERGE_TIMEOUT_MS = 30_000;
const VANISH_TIMEOUT_MS = 30_000;
const HTTP_TIMEOUT_MS = 5000;
/**
 * Nodes killed per N, one at a time: detection varies from kill to kill, with when a peer next tries
 * the victim and how long ago it last saw it.
 */
const KILLS = 5;

const work = mkdtempSync(join(tmpdir(), "p2prc-discovery-"));
let nodes: RunningNode[] = [];

/** Nodes that warned they have no container engine (expected without one: gossip does not need it). */
let engineWarnings = 0;
/** Times a live node heard it was declared dead (a false suspicion, which it refutes); per N. */
let refutes = 0;

/** Each node's logger: warnings and errors on stderr tagged with the node's name, minus "no engine". */
function nodeLogger(name: string): Logger {
  const wrap = (l: Logger): Logger => ({
    debug: (m, ...a) => l.debug(m, ...a),
    info: (m, ...a) => l.info(m, ...a),
    warn: (m, ...a) => {
      if (/first reconcile failed/.test(m)) engineWarnings++;
      else if (/declared this node dead/.test(m)) refutes++;
      else l.warn(m, ...a);
    },
    error: (m, ...a) => l.error(m, ...a),
    withTag: (tag) => wrap(l.withTag(tag)),
  });
  return wrap(createLogger("warn").withTag(name));
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** `count` distinct free loopback ports: all held open at once, then released. */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  const ports: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const s = createServer();
      servers.push(s);
      ports.push(
        await new Promise<number>((resolve, reject) => {
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => {
            const addr = s.address();
            resolve(typeof addr === "object" && addr ? addr.port : 0);
          });
        }),
      );
    }
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
  return ports;
}

/** The bench's own key for reading tables and stats (the nodes run with openNetwork). */
const reader = generateIdentity();

async function getJson<T>(url: string, certPem: string | undefined): Promise<T> {
  const res = await signedFetch(reader, url, {
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    tls: certPem ? pinnedTls(certPem) : undefined, // the nodes serve TLS (the default): pin each one's
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status} ${text.slice(0, 200)}`);
  return JSON.parse(text) as T;
}

const table = async (node: RunningNode) =>
  (await getJson<{ nodes: PeerView[] }>(`${node.url}/v1/p2p/table`, node.certPem)).nodes;
const stats = (node: RunningNode) => getJson<GossipStats>(`${node.url}/v1/p2p/stats`, node.certPem);

/**
 * Polls `pending` every POLL_MS until `done` holds for each (a node is polled until it is done, then no
 * more: the condition cannot turn back in the phase it is used for). Returns each node's ms from `t0`.
 */
async function pollUntil(
  pending: RunningNode[],
  done: (views: PeerView[]) => boolean,
  t0: number,
  timeoutMs: number,
  what: string,
  onViews?: (views: PeerView[], ms: number) => void,
): Promise<Map<RunningNode, number>> {
  const at = new Map<RunningNode, number>();
  let left = [...pending];
  while (left.length > 0) {
    const tick = performance.now();
    if (tick - t0 > timeoutMs) {
      throw new Error(`${what}: ${left.length} node(s) still not there after ${timeoutMs / 1000} s`);
    }
    const checks = await Promise.all(left.map(async (n) => [n, await table(n)] as const));
    const now = performance.now();
    for (const [n, views] of checks) {
      onViews?.(views, now - t0);
      if (done(views)) at.set(n, now - t0);
    }
    left = left.filter((n) => !at.has(n));
    if (left.length > 0) await sleep(Math.max(0, POLL_MS - (performance.now() - tick)));
  }
  return at;
}

interface Result {
  n: number;
  startS: number;
  convergeS: number;
  seedFullS: number;
  medianFullS: number;
  sentPerRound: number;
  recvPerRound: number;
  exchangesPerRound: number;
  failuresInWindow: number;
  roundsInWindow: number;
  cpuPercent: number;
  rssMb: number;
  /** False death notices a live node heard and refuted, over the whole run for this N. */
  refutes: number;
  /** 1-minute load average of the machine at the start and end of this N. */
  load: [number, number];
  /** Per kill: first suspect, first drop (declared dead), last drop (vanished everywhere); seconds. */
  kills: { suspectS: number; detectS: number; vanishS: number }[];
}

async function stopAll(): Promise<void> {
  const all = nodes;
  nodes = [];
  await Promise.all(all.map((n) => n.stop().catch((err) => console.log(`discovery: stop failed: ${err}`))));
}

async function measure(n: number): Promise<Result> {
  const dir = join(work, `n${n}`);
  mkdirSync(dir);
  const ports = await freePorts(n);
  refutes = 0;
  const load0 = loadavg()[0] as number;
  const seed = `127.0.0.1:${ports[0]}`;
  const startNode = async (i: number): Promise<RunningNode> => {
    // A port picked by freePorts can be taken, before its node binds it, as the source port of another
    // node's outgoing connection: then that node (never the seed, bound first) takes a fresh port.
    for (let attempt = 0; ; attempt++) {
      try {
        return await startOn(i, ports[i] as number);
      } catch (err) {
        if (i === 0 || attempt >= 3 || !/already in use/.test(String((err as Error).message))) throw err;
        ports[i] = (await freePorts(1))[0] as number;
      }
    }
  };
  const startOn = (i: number, port: number) =>
    start({
      configDir: join(dir, String(i)),
      env: {},
      logger: nodeLogger(`n${i}`),
      gpus: async () => [], // no nvidia-smi runs: the bench is about gossip
      reconcileIntervalMs: 60_000,
      overrides: {
        serverHost: "127.0.0.1",
        serverPort: port,
        machineName: `n${i}`,
        bootstrap: i === 0 ? [] : [seed],
        gossipIntervalMs: INTERVAL_MS,
        suspectTimeoutMs: SUSPECT_MS,
        logLevel: "warn",
        openNetwork: true, // every node here is the bench's own; gossip and the bench's reads are signed
        ...(process.env.DOCKER_HOST ? { dockerHost: process.env.DOCKER_HOST } : {}),
      },
    });

  // the seed first, then the other N-1 all at once
  const t0 = performance.now();
  nodes.push(await startNode(0));
  const rest = await Promise.all(
    Array.from({ length: n - 1 }, async (_, k) => {
      const node = await startNode(k + 1);
      nodes.push(node);
      return node;
    }),
  );
  const tLast = performance.now();
  const ordered = [nodes[0] as RunningNode, ...rest];

  // (a) convergence
  const full = await pollUntil(
    ordered,
    (v) => v.length >= n,
    tLast,
    CONVERGE_TIMEOUT_MS,
    `N=${n} convergence`,
  );
  const fullMs = ordered.map((node) => full.get(node) as number);
  const convergeMs = Math.max(...fullMs);

  // (b) steady state
  await sleep(STEADY_WAIT_MS);
  const before = await Promise.all(ordered.map(stats));
  const cpu0 = process.cpuUsage();
  const w0 = performance.now();
  await sleep(STATS_WINDOW_MS);
  const cpu = process.cpuUsage(cpu0);
  const wallUs = (performance.now() - w0) * 1000;
  const after = await Promise.all(ordered.map(stats));
  const per = (key: keyof GossipStats) =>
    ordered.reduce((sum, _, i) => {
      const a = after[i] as GossipStats;
      const b = before[i] as GossipStats;
      return sum + (a[key] - b[key]) / Math.max(1, a.rounds - b.rounds);
    }, 0) / n;
  const roundsInWindow =
    ordered.reduce((s, _, i) => s + (after[i] as GossipStats).rounds - (before[i] as GossipStats).rounds, 0) /
    n;
  const failuresInWindow = ordered.reduce(
    (s, _, i) => s + (after[i] as GossipStats).failures - (before[i] as GossipStats).failures,
    0,
  );

  // (c) failure: stop the last nodes started (never the seed), one at a time
  const kills: Result["kills"] = [];
  let alive = [...ordered];
  for (let k = 0; k < KILLS; k++) {
    const victim = alive[alive.length - 1] as RunningNode;
    alive = alive.slice(0, -1);
    let suspectMs = Number.POSITIVE_INFINITY;
    const tKill = performance.now();
    await victim.stop();
    nodes = nodes.filter((x) => x !== victim);
    const gone = await pollUntil(
      alive,
      (v) => !v.some((row) => row.id === victim.nodeId),
      tKill,
      VANISH_TIMEOUT_MS,
      `N=${n} failure`,
      (v, ms) => {
        if (v.some((row) => row.id === victim.nodeId && row.state === "suspect"))
          suspectMs = Math.min(suspectMs, ms);
      },
    );
    const goneMs = [...gone.values()];
    const detectMs = Math.min(...goneMs);
    kills.push({
      suspectS: Math.min(suspectMs, detectMs) / 1000, // a suspect period shorter than a poll is not seen
      detectS: detectMs / 1000,
      vanishS: Math.max(...goneMs) / 1000,
    });
    await sleep(INTERVAL_MS);
  }

  const result: Result = {
    n,
    startS: (tLast - t0) / 1000,
    convergeS: convergeMs / 1000,
    seedFullS: (fullMs[0] as number) / 1000,
    medianFullS: median(fullMs) / 1000,
    sentPerRound: per("bytesSent"),
    recvPerRound: per("bytesReceived"),
    exchangesPerRound: per("exchanges"),
    failuresInWindow,
    roundsInWindow,
    cpuPercent: ((cpu.user + cpu.system) / wallUs) * 100,
    rssMb: process.memoryUsage.rss() / 2 ** 20,
    kills,
    refutes,
    load: [load0, loadavg()[0] as number],
  };
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
  return result;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const fmt = (r: string[]) => r.map((cell, i) => cell.padStart(widths[i] as number)).join("  ");
  console.log(fmt(header));
  for (const r of rows) console.log(fmt(r));
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const results: Result[] = [];
  for (const n of SIZES) results.push(await measure(n));
  const med = (r: Result, key: "suspectS" | "detectS" | "vanishS") => median(r.kills.map((k) => k[key]));
  const all = (r: Result, key: "suspectS" | "detectS" | "vanishS") =>
    r.kills.map((k) => k[key].toFixed(1)).join("/");

  console.log(
    `discovery: N nodes in one process on 127.0.0.1, bootstrapped from node 0; gossip every ${INTERVAL_MS} ms, ` +
      `suspect timeout ${SUSPECT_MS} ms, tables polled every ${POLL_MS} ms; ` +
      `${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
  printTable(
    ["N", "converge s", "sent B/node/round", "recv B/node/round", `vanish s median of ${KILLS}`, "worst"],
    results.map((r) => [
      String(r.n),
      r.convergeS.toFixed(2),
      r.sentPerRound.toFixed(0),
      r.recvPerRound.toFixed(0),
      med(r, "vanishS").toFixed(2),
      Math.max(...r.kills.map((k) => k.vanishS)).toFixed(2),
    ]),
  );
  console.log(
    "  sent: requests this node posted plus its answers to others' requests; recv: answers to its own requests",
  );
  console.log();
  console.log("convergence, from the last node's start (the seed first, then the others at once):");
  printTable(
    ["N", "start all s", "seed full s", "median node full s", "last node full s"],
    results.map((r) => [
      String(r.n),
      r.startS.toFixed(2),
      r.seedFullS.toFixed(2),
      r.medianFullS.toFixed(2),
      r.convergeS.toFixed(2),
    ]),
  );
  console.log();
  console.log(
    `steady state, ${STATS_WINDOW_MS / 1000} s window from ${STEADY_WAIT_MS / 1000} s after convergence:`,
  );
  printTable(
    [
      "N",
      "rounds/node",
      "exchanges/node/round",
      "failed exchanges",
      "CPU % all N",
      "CPU %/node",
      "RSS MB",
      "false deaths",
      "load avg",
    ],
    results.map((r) => [
      String(r.n),
      r.roundsInWindow.toFixed(1),
      r.exchangesPerRound.toFixed(2),
      String(r.failuresInWindow),
      r.cpuPercent.toFixed(1),
      (r.cpuPercent / r.n).toFixed(2),
      r.rssMb.toFixed(0),
      String(r.refutes),
      `${r.load[0].toFixed(1)}→${r.load[1].toFixed(1)}`,
    ]),
  );
  console.log("  CPU: this whole process (all N nodes and the bench) over the window, in % of one core");
  console.log(
    "  false deaths: times a live node heard itself declared dead and refuted it (whole run of this N); " +
      `load avg: the machine's 1-minute load at the start and end of this N (${cpus().length} cores)`,
  );
  console.log();
  console.log(`failure, from stop(), ${KILLS} kills one after another (each kill's time, /-separated):`);
  printTable(
    ["N", "first suspect s", "first drop (declared dead) s", "vanished everywhere s", "spread s (median)"],
    results.map((r) => [
      String(r.n),
      all(r, "suspectS"),
      all(r, "detectS"),
      all(r, "vanishS"),
      median(r.kills.map((k) => k.vanishS - k.detectS)).toFixed(2),
    ]),
  );
  console.log("  spread: from the first node dropping it to the last");
  if (engineWarnings > 0) {
    console.log(
      `  (${engineWarnings} node starts found no container engine and only warned; gossip does not use it)`,
    );
  }
  console.log();
  const first = results[0] as Result;
  const last = results[results.length - 1] as Result;
  const worst = Math.max(...results.map((r) => r.convergeS));
  console.log(
    `convergence ≤ ${CONVERGENCE_GOAL_S} s at a ${INTERVAL_MS / 1000} s interval: worst ${worst.toFixed(2)} s ` +
      `(goal: ${worst <= CONVERGENCE_GOAL_S ? "yes" : "NO"})`,
  );
  const sentRatio = last.sentPerRound / first.sentPerRound;
  const recvRatio = last.recvPerRound / first.recvPerRound;
  console.log(
    `per-round bytes flat: N=${last.n} / N=${first.n} sent ${sentRatio.toFixed(2)}×, received ${recvRatio.toFixed(2)}× ` +
      `(goal ≤ ${FLAT_GOAL}×: ${Math.max(sentRatio, recvRatio) <= FLAT_GOAL ? "yes" : "NO"})`,
  );
}

/** Set by SIGINT / SIGTERM; the nodes are stopped and the temp dir removed before leaving. */
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.log(`discovery: interrupted by ${signal}; cleaning up`);
    void stopAll().finally(() => {
      rmSync(work, { recursive: true, force: true });
      process.exit(130);
    });
  });
}

try {
  await main();
} catch (err) {
  console.log(`discovery: failed: ${(err as Error).stack || String(err)}`);
  process.exitCode = 1;
} finally {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}
