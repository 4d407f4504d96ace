// The NAT relay's byte path (p2p/relay), side by side with direct TCP between the same two processes
// on loopback. Three processes: the relay, a "node" (its own server port, with an echo and a sink
// service, and its relay agents) and this one, the caller. Measured, in this order:
//   memory      the relay's RSS (after a full GC) per idle tunnel, with TUNNELS more tunnels open
//               (goal ≤ 32 KB), and per tunnel once each carried one stream of 256 KB (goal ≤ 150 KB)
//   throughput  one bulk stream caller → node, relayed and direct, taking turns (goal ≥ 0.5× direct);
//               frp (~690 MB/s) and rathole (~1350 MB/s) on a loopback relay shown beside it
//   latency     64-byte echoes, relayed and direct taking turns: added p50 (goal ≤ 100 µs) and p99
//               (goal ≤ 1 ms); then the same while another tunnel carries 200 MB/s (goal p50 ≤ 250 µs)
//   streams     1000 concurrent streams through the relay, 16 KB echoed on each: none lost
// The relay serves every caller here (isMember: all): the bench is about bytes, not membership.
// Run: node_modules/.bin/bun bench/relay.ts (or `make bench`). P2PRC_RELAY_BENCH_MB sets the bulk size
// (default 512). Needs no engine. Other processes on the machine change the figures: note the load.

import { loadavg } from "node:os";
import type { Socket } from "bun";
import { generateIdentity, type Identity, memoryLogger, systemClock } from "../core/index.ts";
import { dialThroughRelay, RelayAgent, type RelayConnection, startRelay } from "../p2p/index.ts";
import { percentile } from "./lib.ts";

const BULK_MB = Number(process.env.P2PRC_RELAY_BENCH_MB ?? 512);
const TURNS = 3;
const TUNNELS = Number(process.env.P2PRC_RELAY_BENCH_TUNNELS ?? 500);
const TRAFFIC_PER_TUNNEL = 256 * 1024;
const RTT_SAMPLES = 2000;
/** A latency phase stops after this many seconds even with fewer samples (a saturated relay is slow). */
const LATENCY_S = 15;
const LOAD_MBPS = 200;
const STREAMS = 1000;
const STREAM_BYTES = 16 * 1024;
const GOALS = { ratio: 0.5, p50: 100, p99: 1000, loadedP50: 250, idleKb: 32, trafficKb: 150 };

// ---------------------------------------------------------------- child roles

/** Reads stdin lines and answers each with one line on stdout. */
function serveCommands(answer: (cmd: string[]) => Promise<unknown>): void {
  let buf = "";
  process.stdin.on("data", async (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) console.log(JSON.stringify(await answer(line.split(" "))));
    }
  });
}

/**
 * A bare splice (no p2prc code): each connection to the returned port is joined to a fresh connection to
 * `target`, bytes copied as they come with backpressure. Two of them in a row, one in the relay's process
 * and one in the node's, are the byte path of frp's shape with nothing else: the floor p2prc's relayed
 * throughput is compared with.
 */
function bareSplice(target: number): number {
  type P = { peer: Socket<P> | undefined; held: Uint8Array | undefined };
  const pass = (from: Socket<P>, chunk: Uint8Array) => {
    const to = from.data.peer;
    if (!to) return;
    const n = to.write(chunk);
    if (n < chunk.length) {
      to.data.held = chunk.subarray(Math.max(n, 0));
      from.pause();
    }
  };
  const drain = (s: Socket<P>) => {
    const held = s.data.held;
    if (!held) return;
    const n = s.write(held);
    if (n < held.length) s.data.held = held.subarray(Math.max(n, 0));
    else {
      s.data.held = undefined;
      s.data.peer?.resume();
    }
  };
  const close = (s: Socket<P>) => {
    s.data.peer?.end();
  };
  const handlers = { data: pass, drain, close, error: close };
  return Bun.listen<P>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(a) {
        a.data = { peer: undefined, held: undefined };
        a.pause();
        Bun.connect<P>({
          hostname: "127.0.0.1",
          port: target,
          socket: {
            open(b) {
              b.data = { peer: a, held: undefined };
              a.data.peer = b;
              a.resume();
            },
            ...handlers,
          },
        });
      },
      ...handlers,
    },
  }).port;
}

async function relayRole(): Promise<void> {
  const relay = await startRelay({
    identity: generateIdentity(),
    isMember: () => true,
    host: "127.0.0.1",
    port: 0,
    limits: { maxTunnels: 10_000, maxStreamsPerMember: 10_000 },
    clock: systemClock,
    logger: memoryLogger(),
  });
  console.log(JSON.stringify({ port: relay.port }));
  serveCommands(async ([cmd, arg]) => {
    if (cmd === "splice") return { port: bareSplice(Number(arg)) };
    for (let i = 0; i < 3; i++) Bun.gc(true);
    await Bun.sleep(200);
    Bun.gc(true);
    const { rss, heapUsed } = process.memoryUsage();
    return { rss, heapUsed, tunnels: relay.stats.tunnels, streams: relay.stats.streams };
  });
}

interface Svc {
  mode: "?" | "echo" | "sink";
  head: Buffer;
  left: number;
  out: Buffer | undefined;
}

/** The node's server: first byte 'E' echoes; 'S' + 8-byte length swallows that many bytes, then says 'K'. */
function nodeServer() {
  return Bun.listen<Svc>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { mode: "?", head: Buffer.alloc(0), left: 0, out: undefined };
        s.setNoDelay(true);
      },
      data(s, chunk) {
        const c = s.data;
        let bytes: Uint8Array = chunk;
        if (c.mode === "?") {
          c.head = Buffer.concat([c.head, chunk]);
          if (c.head[0] === 69) c.mode = "echo";
          else if (c.head.length >= 9) {
            c.mode = "sink";
            c.left = Number(c.head.readBigUInt64BE(1));
          } else return;
          bytes = c.head.subarray(c.mode === "echo" ? 1 : 9);
        }
        if (c.mode === "sink") {
          c.left -= bytes.length;
          if (c.left <= 0 && bytes.length > 0) s.write("K");
        } else if (bytes.length) {
          if (c.out) c.out = Buffer.concat([c.out, bytes]);
          else {
            const n = s.write(bytes);
            if (n < bytes.length) c.out = Buffer.from(bytes.subarray(Math.max(0, n)));
          }
        }
      },
      drain(s) {
        const out = s.data.out;
        if (!out) return;
        const n = s.write(out);
        s.data.out = n < out.length ? out.subarray(Math.max(0, n)) : undefined;
      },
    },
  });
}

async function nodeRole(relayPort: number): Promise<void> {
  const server = nodeServer();
  const relay = { host: "127.0.0.1", port: relayPort };
  const agents: RelayAgent[] = [];
  const tunnel = async (count: number) => {
    const ids: string[] = [];
    const fresh: RelayAgent[] = [];
    for (let i = 0; i < count; i++) {
      const identity = generateIdentity();
      ids.push(identity.nodeId);
      const agent = new RelayAgent({
        identity,
        relays: [relay],
        local: { host: "127.0.0.1", port: server.port },
        clock: systemClock,
        logger: memoryLogger(),
      });
      agent.start();
      fresh.push(agent);
    }
    agents.push(...fresh);
    while (fresh.some((a) => !a.current)) await Bun.sleep(20);
    return ids;
  };
  const [a, b] = await tunnel(2);
  console.log(JSON.stringify({ port: server.port, a, b, splice: bareSplice(server.port) }));
  serveCommands(async ([cmd, n]) => (cmd === "tunnels" ? { ids: await tunnel(Number(n)) } : {}));
}

// ---------------------------------------------------------------- the caller

interface Child {
  proc: ReturnType<typeof Bun.spawn>;
  ask(cmd: string): Promise<Record<string, unknown>>;
  first: Promise<Record<string, unknown>>;
}

function spawnRole(...args: string[]): Child {
  const proc = Bun.spawn([process.execPath, import.meta.path, ...args], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  const waiting: ((v: Record<string, unknown>) => void)[] = [];
  let firstResolve: (v: Record<string, unknown>) => void = () => {};
  const first = new Promise<Record<string, unknown>>((r) => {
    firstResolve = r;
  });
  waiting.push(firstResolve);
  (async () => {
    let buf = "";
    for await (const d of proc.stdout as ReadableStream<Uint8Array>) {
      buf += Buffer.from(d).toString();
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        waiting.shift()?.(JSON.parse(line));
      }
    }
  })();
  const stdin = proc.stdin as import("bun").FileSink;
  return {
    proc,
    first,
    ask(cmd) {
      const p = new Promise<Record<string, unknown>>((r) => waiting.push(r));
      stdin.write(`${cmd}\n`);
      stdin.flush();
      return p;
    },
  };
}

/** One open stream, relayed or direct, with replaceable handlers. */
interface Stream {
  write(b: Uint8Array): number;
  end(): void;
  onData: (c: Uint8Array) => void;
  onDrain: () => void;
}

type Target = { kind: "direct"; port: number } | { kind: "relay"; port: number; node: string };

const caller: Identity = generateIdentity();

async function open(t: Target): Promise<Stream> {
  const st: Stream = { write: () => 0, end: () => {}, onData: () => {}, onDrain: () => {} };
  if (t.kind === "relay") {
    const conn: RelayConnection = await dialThroughRelay({
      relay: { host: "127.0.0.1", port: t.port },
      target: t.node,
      identity: caller,
    });
    conn.attach({ data: (c) => st.onData(c), drain: () => st.onDrain(), close: () => {} });
    const s = conn.socket as Socket<unknown>;
    st.write = (b) => s.write(b);
    st.end = () => s.end();
    return st;
  }
  const s = await Bun.connect<undefined>({
    hostname: "127.0.0.1",
    port: t.port,
    socket: { data: (_s, c) => st.onData(c), drain: () => st.onDrain() },
  });
  s.setNoDelay(true);
  st.write = (b) => s.write(b);
  st.end = () => s.end();
  return st;
}

const sinkHeader = (bytes: number) => {
  const h = Buffer.alloc(9);
  h[0] = 83;
  h.writeBigUInt64BE(BigInt(bytes), 1);
  return h;
};

/**
 * Writes `bytes` to a sink stream as fast as it takes them (paced to `mbps` when given); resolves on 'K'
 * (or once `stop` holds) with the seconds it took. `sent` (when given) counts the bytes written.
 */
async function bulk(
  st: Stream,
  bytes: number,
  mbps?: number,
  stop?: () => boolean,
  count?: { sent: number },
): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 7);
  st.write(sinkHeader(bytes));
  let sent = 0;
  const t0 = performance.now();
  return new Promise<number>((resolve) => {
    st.onData = () => resolve((performance.now() - t0) / 1000);
    const pump = () => {
      while (sent < bytes && !stop?.()) {
        if (mbps && sent > ((performance.now() - t0) / 1000) * mbps * 1e6) {
          setTimeout(pump, 2);
          return;
        }
        const want = Math.min(chunk.length, bytes - sent);
        const n = st.write(chunk.subarray(0, want));
        if (n > 0) sent += n;
        if (count) count.sent = sent;
        if (n < want) return; // the rest on drain
      }
      if (stop?.()) resolve((performance.now() - t0) / 1000);
    };
    st.onDrain = pump;
    pump();
  });
}

/** Round-trip times in µs of `count` 64-byte echoes on an echo stream (fewer once `until` passed). */
async function echoRtts(st: Stream, count: number, until = Number.POSITIVE_INFINITY): Promise<number[]> {
  const msg = Buffer.alloc(64, 1);
  const rtts: number[] = [];
  for (let i = 0; i < count && performance.now() < until; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      let got = 0;
      st.onData = (c) => {
        got += c.length;
        if (got >= msg.length) resolve();
      };
      st.write(msg);
    });
    rtts.push((performance.now() - t0) * 1000);
  }
  return rtts;
}

async function echoStream(t: Target): Promise<Stream> {
  const st = await open(t);
  st.write(Buffer.from("E"));
  return st;
}

/** Direct and relayed RTTs, taking turns in rounds of 200, for at most LATENCY_S seconds. */
async function latency(direct: Target, relayed: Target): Promise<{ d: number[]; r: number[] }> {
  const [ds, rs] = [await echoStream(direct), await echoStream(relayed)];
  const until = performance.now() + LATENCY_S * 1000;
  await echoRtts(ds, 200, until);
  await echoRtts(rs, 200, until);
  const d: number[] = [];
  const r: number[] = [];
  for (let i = 0; i < RTT_SAMPLES / 200 && performance.now() < until; i++) {
    d.push(...(await echoRtts(ds, 200, until)));
    r.push(...(await echoRtts(rs, 200, until)));
  }
  ds.end();
  rs.end();
  return { d, r };
}

/** `n` streams at once, each echoing STREAM_BYTES; how many came back whole. */
async function concurrentStreams(t: Target, n: number): Promise<{ ok: number; ms: number }> {
  const t0 = performance.now();
  const payload = Buffer.alloc(STREAM_BYTES, 9);
  const results = await Promise.all(
    Array.from({ length: n }, async () => {
      try {
        const st = await echoStream(t);
        let got = 0;
        const done = new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 30_000);
          st.onData = (c) => {
            got += c.length;
            if (got >= payload.length) {
              clearTimeout(timer);
              resolve(true);
            }
          };
        });
        st.write(payload);
        const ok = await done;
        st.end();
        return ok;
      } catch {
        return false;
      }
    }),
  );
  return { ok: results.filter(Boolean).length, ms: performance.now() - t0 };
}

async function main(): Promise<void> {
  const load0 = loadavg()[0] as number;
  const relayChild = spawnRole("relay");
  const { port: relayPort } = (await relayChild.first) as { port: number };
  const nodeChild = spawnRole("node", String(relayPort));
  const {
    port: nodePort,
    a,
    b,
    splice,
  } = (await nodeChild.first) as {
    port: number;
    a: string;
    b: string;
    splice: number;
  };
  const direct: Target = { kind: "direct", port: nodePort };
  // caller → bare splice in the relay's process → bare splice in the node's process → the node's server
  const { port: chainPort } = (await relayChild.ask(`splice ${splice}`)) as { port: number };
  const chain: Target = { kind: "direct", port: chainPort };
  // caller → bare splice in the relay's process → the node's server: the calibration shape (one hop)
  const { port: onePort } = (await relayChild.ask(`splice ${nodePort}`)) as { port: number };
  const one: Target = { kind: "direct", port: onePort };
  const viaA: Target = { kind: "relay", port: relayPort, node: a };
  const viaB: Target = { kind: "relay", port: relayPort, node: b };
  const mem = async () => (await relayChild.ask("mem")) as { rss: number; heapUsed: number; streams: number };
  const lines: string[] = [];
  const out = (s: string) => {
    console.log(s);
    lines.push(s);
  };
  const yes = (ok: boolean) => (ok ? "yes" : "NO");
  try {
    // memory
    console.error("relay: memory…");
    const m0 = await mem();
    const { ids } = (await nodeChild.ask(`tunnels ${TUNNELS}`)) as { ids: string[] };
    const m1 = await mem();
    for (let i = 0; i < ids.length; i += 50) {
      await Promise.all(
        ids.slice(i, i + 50).map(async (node) => {
          const st = await open({ kind: "relay", port: relayPort, node });
          await bulk(st, TRAFFIC_PER_TUNNEL);
          st.end();
        }),
      );
    }
    while ((await mem()).streams > 0) await Bun.sleep(50);
    const m2 = await mem();
    const idleKb = (m1.rss - m0.rss) / TUNNELS / 1024;
    const trafficKb = (m2.rss - m0.rss) / TUNNELS / 1024;

    // throughput
    console.error("relay: throughput…");
    const mbps: { d: number[]; r: number[]; c: number[]; o: number[] } = { d: [], r: [], c: [], o: [] };
    const bytes = BULK_MB * 1024 * 1024;
    for (let i = 0; i < TURNS; i++) {
      for (const [t, into] of [
        [direct, mbps.d],
        [viaA, mbps.r],
        [chain, mbps.c],
        [one, mbps.o],
      ] as const) {
        const st = await open(t);
        into.push(bytes / 1e6 / (await bulk(st, bytes)));
        st.end();
      }
    }
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
    const [dMb, rMb, cMb, oMb] = [med(mbps.d), med(mbps.r), med(mbps.c), med(mbps.o)];

    // latency, unloaded then loaded
    console.error("relay: latency…");
    const idle = await latency(direct, viaA);
    let loading = true;
    const loader = await open(viaB);
    const moved = { sent: 0 };
    const loadRun = bulk(loader, 2 ** 40, LOAD_MBPS, () => !loading, moved);
    await Bun.sleep(300);
    const loaded = await latency(direct, viaA);
    loading = false;
    const loadS = await loadRun;
    loader.end();
    // NaN when a phase got no sample (a saturated machine): printed as "n/a", and never meets its goal
    const p = (xs: number[], q: number) => (xs.length ? percentile(xs, q) : Number.NaN);
    const added = (x: { d: number[]; r: number[] }, q: number) => p(x.r, q) - p(x.d, q);

    // concurrent streams
    console.error("relay: concurrent streams…");
    const conc = await concurrentStreams(viaA, STREAMS);
    const load1 = loadavg()[0] as number;

    out(
      `relay: loopback, relay and node in their own processes (load average ${load0.toFixed(2)} → ${load1.toFixed(2)}; other processes change the figures)`,
    );
    out("  measure                                   relayed      direct     goal            meets");
    const row = (name: string, r: string, d: string, goal: string, ok: string) =>
      out(`  ${name.padEnd(42)}${r.padStart(9)}   ${d.padStart(9)}     ${goal.padEnd(16)}${ok}`);
    const f = (x: number, digits = 0) => (Number.isNaN(x) ? "n/a" : x.toFixed(digits));
    /** A latency pair (relayed, direct) and the added figure against its goal. */
    const rtt = (name: string, x: { d: number[]; r: number[] }, q: number, goal: number) => {
      row(name, f(p(x.r, q)), f(p(x.d, q)), "", "");
      row(`  added p${q}, µs`, f(added(x, q)), "", `≤ ${goal}`, yes(added(x, q) <= goal));
    };
    row(
      `bulk throughput, MB/s (median of ${TURNS} × ${BULK_MB} MB)`,
      f(rMb),
      f(dMb),
      `≥ ${GOALS.ratio}× direct`,
      `${yes(rMb >= GOALS.ratio * dMb)} (${f(rMb / dMb, 2)}×)`,
    );
    out(
      `    for reference, through a loopback relay: frp ~690 MB/s, rathole ~1350 MB/s; p2prc ${f(rMb)} MB/s`,
    );
    out(
      `    the same two hops as bare Bun splices (relay's process, node's process; no p2prc code): ${f(cMb)} MB/s (${f(cMb / dMb, 2)}× direct); p2prc relayed is ${f(rMb / cMb, 2)}× of it`,
    );
    out(
      `    one bare splice only (relay's process → the node's server; the issue's calibration, no second hop): ${f(oMb)} MB/s (${f(oMb / dMb, 2)}× direct)`,
    );
    out(
      "    a relayed stream must reach a socket of its own on the node (its HTTPS port, a container's port, a mapped service), and Bun.serve cannot be handed an accepted socket: the node's own splice is the second hop",
    );
    rtt("RTT p50, µs (64 B echo)", idle, 50, GOALS.p50);
    rtt("RTT p99, µs", idle, 99, GOALS.p99);
    rtt(`RTT p50 while another tunnel moves ${LOAD_MBPS} MB/s`, loaded, 50, GOALS.loadedP50);
    out(
      `    (the load moved ${f(moved.sent / 1e6 / loadS)} MB/s over ${f(loadS, 1)} s, ${loaded.r.length} samples each; p99 relayed ${f(p(loaded.r, 99))} µs, direct ${f(p(loaded.d, 99))} µs)`,
    );
    const memRows = [
      [`relay RSS per idle tunnel, KB (${TUNNELS} tunnels)`, idleKb, GOALS.idleKb],
      [`  per tunnel after ${TRAFFIC_PER_TUNNEL / 1024} KB through it, KB`, trafficKb, GOALS.trafficKb],
    ] as const;
    for (const [name, kb, goal] of memRows) row(name, f(kb, 1), "", `≤ ${goal}`, yes(kb <= goal));
    out(
      `    (relay RSS ${f(m0.rss / 1e6, 1)} MB with 2 tunnels, ${f(m1.rss / 1e6, 1)} MB with ${TUNNELS + 2}, ${f(m2.rss / 1e6, 1)} MB after traffic)`,
    );
    row(
      `${STREAMS} concurrent streams (${STREAM_BYTES / 1024} KB echoed)`,
      `${conc.ok}/${STREAMS}`,
      "",
      "none lost",
      `${yes(conc.ok === STREAMS)} (${f(conc.ms)} ms)`,
    );
  } finally {
    relayChild.proc.kill();
    nodeChild.proc.kill();
  }
}

const role = process.argv[2];
if (role === "relay") await relayRole();
else if (role === "node") await nodeRole(Number(process.argv[3]));
else await main();
