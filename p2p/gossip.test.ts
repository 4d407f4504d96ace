// Gossip between in-process nodes (p2p/test-net.ts): each node is a GossipService behind the real p2p
// routes, and "the network" is a fetch that routes by URL. Time is a ManualClock; rounds are run by hand.
import { describe, expect, test } from "bun:test";
import { generateIdentity, type Identity } from "../core/index.ts";
import { openStore } from "../store/index.ts";
import { signedRecord as fixtureRecord } from "./fixtures.ts";
import { setNodeMetadata } from "./gossip.ts";
import { idsOf, liveIds, Net, type TestNode } from "./test-net.ts";
import type { NodeRecord, SignedRecord } from "./types.ts";

async function post(node: TestNode, path: string, body: unknown) {
  const res = await node.app.request(`/v1/p2p${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

const signedRecord = (who: Identity, over: Partial<NodeRecord> = {}, signer: Identity = who): SignedRecord =>
  fixtureRecord(
    who,
    { name: "outsider", addresses: [{ host: "127.0.0.1", port: 1 }], issuedAt: 0, ...over },
    signer,
  );

/** Five nodes, all seeded from the first only, run until everyone lists everyone. */
async function converged(net: Net, count = 5): Promise<TestNode[]> {
  const nodes = Array.from({ length: count }, (_, i) => net.add(`node-${i}`));
  const first = nodes[0] as TestNode;
  for (const n of nodes.slice(1)) n.store.peers.addSeed("127.0.0.1", first.port, true, net.clock.now());
  for (let r = 0; r < 10; r++) {
    await net.rounds(nodes);
    net.clock.advance(1000);
    if (nodes.every((n) => liveIds(n).length === count)) return nodes;
  }
  throw new Error(`no convergence: ${nodes.map((n) => liveIds(n).length).join(",")}`);
}

describe("joining", () => {
  test("five nodes seeded from one learn each other within a few rounds", async () => {
    const net = new Net();
    const nodes = await converged(net);
    const all = idsOf(...nodes);
    for (const n of nodes) {
      expect(liveIds(n)).toEqual(all);
      const views = n.table.views();
      expect(views[0]?.id).toBe(n.identity.nodeId);
      for (const m of nodes)
        expect(views.find((v) => v.id === m.identity.nodeId)).toMatchObject({ name: m.name, port: m.port });
    }
    // the seed learned its node id
    expect(nodes[1]?.store.peers.seeds()[0]?.nodeId).toBe(nodes[0]?.identity.nodeId);
  });

  test("a round reads the whole table only when it changed; silent records and tombstones are looked for every 5 s (issue 12)", async () => {
    const net = new Net();
    const nodes = await converged(net);
    const node = nodes[1] as (typeof nodes)[number];
    let reads = 0;
    const list = node.store.peers.list.bind(node.store.peers);
    node.store.peers.list = () => {
      reads++;
      return list();
    };
    for (let i = 0; i < 10; i++) {
      net.clock.advance(1000);
      await node.gossip.round();
    }
    // 10 rounds of 1 s: the try order built once and the rows nobody can contact found once (the table
    // is unchanged after; it was one read a round for the targets, then one every 5 s for silent
    // records: costs that grew with N)
    expect(reads).toBe(2);
    // a new version in the table (a changed digest): each is made again, once
    await (nodes[2] as (typeof nodes)[number]).gossip.refreshSelf(true);
    for (let i = 0; i < 5; i++) {
      net.clock.advance(1000);
      await net.rounds(nodes);
    }
    const after = reads;
    expect(after - 2).toBe(2);
    for (let i = 0; i < 5; i++) {
      net.clock.advance(1000);
      await node.gossip.round();
    }
    expect(reads - after).toBe(0);
  });

  test("a record nobody can contact (no address: a client-only node) is dropped once silent for 3 suspect timeouts", async () => {
    const net = new Net();
    const nodes = await converged(net);
    const node = nodes[1] as TestNode;
    const client = generateIdentity();
    const from = fixtureRecord(client, { name: "laptop", addresses: [] });
    await node.gossip.handleExchange({ from, hash: "0".repeat(64) }, "127.0.0.1", client.nodeId);
    expect(node.table.get(client.nodeId)?.state).toBe("alive");
    expect(node.table.unreachable()).toEqual([client.nodeId]);
    for (let i = 0; i < 10; i++) {
      net.clock.advance(1000);
      await node.gossip.round();
    }
    expect(node.table.get(client.nodeId)?.state).toBe("alive"); // 10 s: within 3 × 5 s
    for (let i = 0; i < 10; i++) {
      net.clock.advance(1000);
      await node.gossip.round();
    }
    expect(node.table.get(client.nodeId)?.state).toBe("dead");
    expect(node.table.unreachable()).toEqual([]);
  });

  test("at steady state an exchange is one request with equal hashes: no sync, bytes flat", async () => {
    const net = new Net();
    const nodes = await converged(net);
    await net.rounds(nodes, 2); // settle latencies and lastSeen (not part of the digest)
    const before = net.calls.length;
    const sent = nodes.map((n) => n.gossip.stats.bytesSent);
    await net.rounds(nodes, 3);
    const made = net.calls.slice(before);
    expect(made.length).toBeGreaterThan(0);
    expect(made.filter((c) => c.url.endsWith("/sync"))).toEqual([]);
    nodes.forEach((n, i) => {
      // per round: up to fanout requests out and a few answers; hashes and versions, no records
      expect((n.gossip.stats.bytesSent - (sent[i] as number)) / 3).toBeLessThan(1500);
    });
    // neither side sends its record once the other said it holds the current version
    const exchanges = made.filter((c) => c.url.endsWith("/exchange"));
    expect(exchanges.length).toBeGreaterThan(0);
    for (const c of exchanges) expect(JSON.parse(c.body ?? "{}").from).toBeUndefined();
  });

  test("a quiet network's round contacts one peer; any difference makes the next rounds full again (issue 12)", async () => {
    const net = new Net();
    const nodes = await converged(net, 6);
    await net.rounds(nodes, 2); // settle latencies and lastSeen (not part of the digest)
    const n0 = nodes[0] as TestNode;
    const contacts = async (node: TestNode) => {
      const before = net.calls.length;
      await node.gossip.round();
      return net.calls.slice(before).filter((c) => c.from === node.name && c.url.endsWith("/exchange"))
        .length;
    };
    // every table equal and nothing failed in the last round: one exchange a round, not gossipFanout (3)
    for (let r = 0; r < 3; r++) expect(await contacts(n0)).toBe(1);
    // a change on another node: the node that exchanges with n0 next finds the hashes differ, and so n0's
    // next round is full; once tables are equal again rounds are quiet again
    setNodeMetadata((nodes[4] as TestNode).store.meta, "changed");
    await (nodes[4] as TestNode).gossip.round();
    for (let r = 0; r < 4; r++) await net.rounds(nodes.slice(1));
    const seen = [];
    for (let r = 0; r < 3; r++) {
      seen.push(await contacts(n0));
      await net.rounds(nodes.slice(1));
    }
    expect(seen).toContain(3);
    expect(seen.at(-1)).toBe(1);
    // a peer that fails: quiet rounds until one reaches it (one of the 4 least recently contacted, at
    // random), then full rounds, the suspect besides
    net.behaviour.set(`127.0.0.1:${(nodes[5] as TestNode).port}`, "down");
    const whileDown: number[] = [];
    while (whileDown.length < 60 && !whileDown.some((c) => c > 1)) whileDown.push(await contacts(n0));
    for (let r = 0; r < 4; r++) whileDown.push(await contacts(n0));
    const full = whileDown.findIndex((c) => c > 1);
    expect(full).toBeGreaterThan(0);
    expect(whileDown.slice(0, full).every((c) => c === 1)).toBe(true);
    expect(whileDown.slice(full).every((c) => c >= 3)).toBe(true);
  });

  test("while exchanges time out a round contacts fewer peers, suspects in turns, and waits longer to declare one dead; refusals change nothing (issue 12)", async () => {
    const contactsOf = (net: Net, a: TestNode) => async () => {
      const before = net.calls.length;
      await a.gossip.round();
      return new Set(
        net.calls
          .slice(before)
          .filter((c) => c.from === a.name && c.url.endsWith("/exchange"))
          .map((c) => new URL(c.url).port),
      );
    };
    // 4 peers refuse connections: every suspect is contacted each round, besides the full fanout (the
    // default interval: 800 ms before an exchange times out, which a loaded test machine never reaches)
    const calm = new Net({ suspectTimeoutMs: 60_000 });
    const [c0, ...others] = (await converged(calm, 8)) as [TestNode, ...TestNode[]];
    const refused = others.slice(0, 4);
    for (const p of refused) calm.set(p, "down");
    const refusing = contactsOf(calm, c0);
    // quiet rounds contact one peer until one of them is found refusing (then rounds are full)
    const allSuspect = () => refused.every((p) => c0.table.get(p.identity.nodeId)?.state === "suspect");
    for (let r = 0; r < 40 && !allSuspect(); r++) await refusing();
    expect(allSuspect()).toBe(true);
    const refusedRound = await refusing();
    for (const p of refused) expect(refusedRound.has(String(p.port))).toBe(true);
    expect(refusedRound.size).toBe(7); // 4 suspects and the 3 others
    // interval 100 ms and suspect timeout 400 ms: an exchange gives up after 150–200 ms of real time
    const net = new Net({ gossipIntervalMs: 100, suspectTimeoutMs: 400 });
    const nodes = await converged(net, 8);
    const [a, ...peers] = nodes as [TestNode, ...TestNode[]];
    for (const p of peers) a.table.markContact(p.identity.nodeId); // heard from just now (ManualClock)
    const contacted = contactsOf(net, a);
    // every peer stops answering in time, as when this node's host or network is overloaded: the first
    // timeout halves the window to one, so a round contacts one alive peer and one suspect, in turns
    for (const p of peers) net.set(p, "hang");
    await contacted();
    const suspected = () => peers.every((p) => a.table.get(p.identity.nodeId)?.state === "suspect");
    const halved: Set<string>[] = [];
    for (let r = 0; r < 20 && !suspected(); r++) halved.push(await contacted());
    expect(suspected()).toBe(true);
    expect(halved.length).toBeGreaterThan(1);
    for (const round of halved) expect(round.size).toBeLessThanOrEqual(2);
    const turns: Set<string>[] = [];
    for (let r = 0; r < peers.length; r++) turns.push(await contacted());
    for (const round of turns) expect(round.size).toBe(1);
    expect(new Set(turns.flatMap((round) => [...round])).size).toBe(peers.length); // each had its turn
    // peers that were alive timed out: this node waits 3 suspect timeouts (the fanout) before a death
    net.clock.advance(600);
    for (let r = 0; r < peers.length; r++) await contacted();
    for (const p of peers) expect(a.table.get(p.identity.nodeId)?.state).toBe("suspect");
    net.clock.advance(1000);
    for (let r = 0; r < peers.length; r++) await contacted();
    for (const p of peers) expect(a.table.get(p.identity.nodeId)?.state).toBe("dead");
  }, 20_000); // ~30 rounds of 150–200 ms timeouts

  test("one hung peer among live ones is declared dead after one suspect timeout: its own timeouts do not stretch it (issue 12)", async () => {
    const net = new Net({ gossipIntervalMs: 100, suspectTimeoutMs: 400 });
    const nodes = await converged(net, 5);
    await net.rounds(nodes, 2); // a quiet network: a round contacts one peer
    const [b, ...peers] = nodes as [TestNode, ...TestNode[]];
    for (const p of peers) b.table.markContact(p.identity.nodeId);
    const victim = peers[0] as TestNode;
    const id = victim.identity.nodeId;
    net.set(victim, "hang"); // its packets dropped: a timeout, not a refusal
    // found by a quiet round, its only contact: a round with a timeout and no answer
    for (let r = 0; r < 30 && b.table.get(id)?.state !== "suspect"; r++) {
      const before = net.calls.length;
      await b.gossip.round();
      const sent = net.calls.slice(before).filter((c) => c.from === b.name && c.url.endsWith("/exchange"));
      expect(sent.length).toBe(1);
    }
    expect(b.table.get(id)?.state).toBe("suspect");
    net.clock.advance(600); // 1.5 suspect timeouts since the last contact
    for (let r = 0; r < 4; r++) await b.gossip.round();
    expect(b.table.get(id)?.state).toBe("dead");
    for (const p of peers.slice(1)) expect(b.table.get(p.identity.nodeId)?.state).toBe("alive");
  });

  test("a peer that lost its table gets this node's record again at once (no failed exchange)", async () => {
    const net = new Net();
    const nodes = await converged(net);
    await net.rounds(nodes, 2);
    const [a, b] = nodes as [TestNode, TestNode];
    // b forgets a (as after losing state.db); a still believes b holds its record
    b.store.peers.remove(a.identity.nodeId);
    const failures = a.gossip.stats.failures;
    await a.gossip.exchangeWith({ url: b.url, id: b.identity.nodeId });
    expect(a.gossip.stats.failures).toBe(failures);
    expect(b.table.record(a.identity.nodeId)?.record.id).toBe(a.identity.nodeId);
  });
});

describe("introduced nodes", () => {
  test("a node passed on by a peer is admitted once this node reached it; one nobody answers for is not", async () => {
    const net = new Net();
    const nodes = await converged(net, 3);
    const newcomer = net.add("newcomer");
    newcomer.store.peers.addSeed("127.0.0.1", (nodes[0] as TestNode).port, true, net.clock.now());
    // a record of a node that does not answer, passed on by node 0 with the others
    const ghost = signedRecord(generateIdentity(), { name: "ghost", version: 5 });
    await post(nodes[0] as TestNode, "/sync", { from: ghost, records: [], deaths: [], want: [] });
    await newcomer.gossip.round(); // learns of the others from its seed: they wait for a probe
    expect(liveIds(newcomer)).toEqual(idsOf(newcomer, nodes[0] as TestNode));
    await newcomer.gossip.round(); // probes them: the real ones answer
    expect(liveIds(newcomer)).toEqual(idsOf(newcomer, ...nodes));
  });

  test("--us (one round with all = true) lists every node its seed knows, probed in that round", async () => {
    const net = new Net();
    const nodes = await converged(net, 4);
    const client = net.add("client");
    client.store.peers.addSeed("127.0.0.1", (nodes[0] as TestNode).port, true, net.clock.now());
    await client.gossip.round(true);
    expect(liveIds(client)).toEqual(idsOf(client, ...nodes));
  });
});

describe("probing many introduced nodes", () => {
  /** A hub that holds `n` nodes (each reached it), and a newcomer seeded from the hub. */
  async function hubOf(net: Net, n: number) {
    const hub = net.add("hub");
    const nodes = Array.from({ length: n }, (_, i) => net.add(`n${i}`));
    for (const node of nodes) node.store.peers.addSeed("127.0.0.1", hub.port, true, net.clock.now());
    await net.rounds(nodes); // each reaches the hub; none of them learns the newcomer below
    const newcomer = net.add("newcomer");
    newcomer.store.peers.addSeed("127.0.0.1", hub.port, true, net.clock.now());
    await newcomer.gossip.round(); // learns of the 20 from the hub: they wait for a probe
    net.clock.advance(1000);
    return { hub, nodes, newcomer };
  }
  const probesBy = (net: Net, from: string, since: number) =>
    net.calls
      .slice(since)
      .filter((c) => c.from === from && c.body?.includes('"from"') && c.url.endsWith("/exchange"));

  test("20 introduced nodes that answer are all admitted in one round (a probe that reached its node frees its lane)", async () => {
    const net = new Net(); // probeConcurrency 8
    const { hub, nodes, newcomer } = await hubOf(net, 20);
    expect(liveIds(newcomer)).toEqual(idsOf(newcomer, hub));
    // one probe per lane and round took ceil(20 / 8) = 3 rounds: 6 s for 50 nodes at a 1 s interval
    const since = net.calls.length;
    await newcomer.gossip.round();
    expect(liveIds(newcomer)).toEqual(idsOf(newcomer, hub, ...nodes));
    // a probe is one exchange: what the probed node holds comes with the rounds' exchanges
    const syncs = net.calls.slice(since).filter((c) => c.from === "newcomer" && c.url.endsWith("/sync"));
    expect(syncs.filter((c) => !c.url.includes(`:${hub.port}/`))).toEqual([]);
  });

  test("introduced nodes that do not answer still cost at most probeConcurrency probes a round", async () => {
    const net = new Net();
    const { hub, nodes, newcomer } = await hubOf(net, 20);
    for (const node of nodes) net.set(node, "down");
    const since = net.calls.length;
    await newcomer.gossip.round();
    const tried = new Set(probesBy(net, "newcomer", since).map((c) => new URL(c.url).port));
    tried.delete(String(hub.port));
    expect(tried.size).toBe(8);
    expect(liveIds(newcomer)).toEqual(idsOf(newcomer, hub));
  });

  test("an exchange pushes no record of a node the peer does not hold: the peer pulls what it lacks", async () => {
    const net = new Net();
    const { hub, nodes, newcomer } = await hubOf(net, 20);
    const since = net.calls.length;
    await hub.gossip.round(true); // reaches everyone, the newcomer (which holds none of the 20) too
    const pushed = net.calls
      .slice(since)
      .filter((c) => c.from === "hub" && c.url.endsWith(`:${newcomer.port}/v1/p2p/sync`))
      .flatMap((c) => (JSON.parse(c.body ?? "{}") as { records?: SignedRecord[] }).records ?? []);
    // pushed, they were only introductions there, already waiting: sent again at every exchange
    expect(pushed.map((r) => r.record.id)).not.toContain((nodes[0] as TestNode).identity.nodeId);
    expect(pushed.length).toBe(0);
    await newcomer.gossip.round();
    expect(liveIds(newcomer)).toEqual(idsOf(newcomer, hub, ...nodes));
  });
});

describe("changes spread", () => {
  test("metadata set on one node reaches every node", async () => {
    const net = new Net();
    const nodes = await converged(net);
    const n3 = nodes[3] as TestNode;
    setNodeMetadata(n3.store.meta, "gpu: rtx 4090");
    for (let r = 0; r < 6; r++) {
      await net.rounds(nodes);
      net.clock.advance(1000);
    }
    for (const n of nodes) {
      expect(n.table.views().find((v) => v.id === n3.identity.nodeId)?.metadata).toBe("gpu: rtx 4090");
    }
  });

  test("a new version is spread at once by an early round, at most one between two ticks (issue 12)", async () => {
    // fanout 5 of 5 peers: each early round reaches every node. At the default 3 the wave is an epidemic
    // that can miss a node (about 1 run in 60 here), which the next tick mends
    const net = new Net({ gossipFanout: 5 });
    const nodes = await converged(net, 6);
    const n0 = nodes[0] as TestNode;
    const settle = async () => {
      // early rounds start a microtask after their news and chain: wait until no node is in one
      for (let i = 0; i < 20; i++) {
        await Promise.all(nodes.map((n) => n.gossip.idle()));
        await Bun.sleep(1);
      }
    };
    for (const n of nodes) n.gossip.start(); // each runs its first round now; the ManualClock stays put
    await settle();
    const rounds = () => nodes.map((n) => n.gossip.stats.rounds);
    const before = rounds();
    const versionAt = (n: TestNode) => n.table.record(n0.identity.nodeId)?.record.version ?? 0;
    setNodeMetadata(n0.store.meta, "first change");
    expect(await n0.gossip.refreshSelf()).toBe(true);
    const v1 = versionAt(n0);
    await settle();
    // no tick has come (the clock did not move), yet every node holds it: each spread it once, at once
    expect(nodes.map(versionAt)).toEqual(nodes.map(() => v1));
    const after = rounds();
    for (const [i, r] of after.entries()) expect(r - (before[i] as number)).toBeLessThanOrEqual(1);
    expect(after.reduce((s, r) => s + r, 0)).toBeGreaterThan(before.reduce((s, r) => s + r, 0));
    // a second change before the next tick: this interval's early round is spent, nobody else has it yet
    setNodeMetadata(n0.store.meta, "second change");
    await n0.gossip.refreshSelf();
    await settle();
    expect(nodes.filter((n) => versionAt(n) > v1).length).toBe(1);
    expect(rounds()).toEqual(after);
    // the next tick spreads it the usual way
    net.clock.advance(1000);
    await settle();
    expect(nodes.filter((n) => versionAt(n) > v1).length).toBeGreaterThan(1);
    for (const n of nodes) n.gossip.stop();
    await settle();
  });

  test("setNodeMetadata refuses more than 1024 characters", () => {
    expect(() => setNodeMetadata(openStore(":memory:").meta, "x".repeat(1025))).toThrow(/1024/);
  });
});

describe("failure detection", () => {
  test("a node that declared every peer dead while they declared it dead rejoins (a notice about itself from a reporter it does not hold)", async () => {
    const net = new Net();
    const nodes = await converged(net, 4);
    const x = nodes[3] as TestNode;
    const notice = (reporter: TestNode, about: TestNode) => {
      const version = reporter.table.get(about.identity.nodeId)?.version ?? 0;
      const body = {
        id: about.identity.nodeId,
        version,
        reporter: reporter.identity.nodeId,
        at: net.clock.now(),
      };
      return { ...body, signature: reporter.identity.signJson(body) };
    };
    // what a node starved at start-up does: every exchange of its timed out, and every peer's with it
    for (const other of nodes.slice(0, 3)) {
      expect(x.table.applyDeath(notice(x, other))).toBe("applied");
      expect(other.table.applyDeath(notice(other, x))).toBe("applied");
    }
    expect(liveIds(x)).toEqual([x.identity.nodeId]);
    for (let r = 0; r < 8; r++) {
      await net.rounds(nodes);
      net.clock.advance(1000);
      if (nodes.every((n) => liveIds(n).length === 4)) break;
    }
    for (const n of nodes) expect(liveIds(n)).toEqual(idsOf(...nodes));
  });

  test("a dead node becomes suspect, is declared dead after suspectTimeoutMs, and the notice spreads", async () => {
    const net = new Net();
    const nodes = await converged(net);
    const victim = nodes[2] as TestNode;
    const others = nodes.filter((n) => n !== victim);
    net.set(victim, "down");
    // each node tries its peers least recently tried first (TryOrder), 3 a round: a node that has just
    // tried the dead one tries it again in the next round, not always in this one
    await net.rounds(others);
    await net.rounds(others);
    const suspects = others.filter((n) => n.table.get(victim.identity.nodeId)?.state === "suspect");
    expect(suspects.length).toBeGreaterThan(0);
    // not dead before the timeout
    net.clock.advance(2000);
    await net.rounds(others);
    for (const n of others) expect(n.table.get(victim.identity.nodeId)?.state).not.toBe("dead");
    for (let r = 0; r < 8; r++) {
      net.clock.advance(1000);
      await net.rounds(others);
    }
    for (const n of others) {
      expect(n.table.get(victim.identity.nodeId)?.state).toBe("dead");
      expect(liveIds(n)).toEqual(idsOf(...others));
      const notice = n.table.death(victim.identity.nodeId);
      expect(notice?.version).toBe(victim.table.get(victim.identity.nodeId)?.version as number);
      expect(idsOf(...others)).toContain(notice?.reporter as string);
    }
  });

  test("a slow-but-alive peer (answers after 1.5 × the base timeout) is never declared dead: its timeout adapts", async () => {
    // interval 100 ms: the base timeout is 150 ms; the slow node answers after 220 ms of real time
    const net = new Net({ gossipIntervalMs: 100, suspectTimeoutMs: 2000 });
    const nodes = await converged(net, 3);
    const [a, b, slow] = nodes as [TestNode, TestNode, TestNode];
    net.set(slow, "slow", 220);
    const id = slow.identity.nodeId;
    // 12 s of the ManualClock (6 suspect timeouts), a round each second: a quiet round, or one after a
    // timeout (pace.Window), contacts one of the two peers, so the slow one's latency (the median of
    // its last 5 round trips) needs more rounds than one contact each to show
    for (let r = 0; r < 12; r++) {
      net.clock.advance(1000);
      await net.rounds([a, b, slow]);
      for (const n of [a, b]) expect(n.table.get(id)?.state).not.toBe("dead");
    }
    for (const n of [a, b]) {
      expect(n.table.get(id)?.state).toBe("alive");
      expect(n.table.get(id)?.latencyMs as number).toBeGreaterThanOrEqual(200);
      // the peer's own latency keeps its timeout above its answers: at most the first exchange timed out
      expect(n.gossip.timeoutMs(id)).toBeGreaterThanOrEqual(400);
      expect(n.gossip.stats.failures).toBeLessThanOrEqual(2);
    }
  });

  test("a node that runs late does not suspect a peer whose exchange timed out; a refused one is still declared dead", async () => {
    let lateMs = 1000;
    const net = new Net({ gossipIntervalMs: 100, suspectTimeoutMs: 1000 });
    const nodes = Array.from({ length: 4 }, (_, i) =>
      net.add(`node-${i}`, i === 0 ? { lateness: () => lateMs } : {}),
    );
    const first = nodes[0] as TestNode;
    for (const n of nodes.slice(1)) n.store.peers.addSeed("127.0.0.1", first.port, true, net.clock.now());
    for (let r = 0; r < 10 && !nodes.every((n) => liveIds(n).length === 4); r++) {
      await net.rounds(nodes);
      net.clock.advance(1000);
    }
    const [late, , hung, gone] = nodes as [TestNode, TestNode, TestNode, TestNode];
    expect(liveIds(late)).toEqual(idsOf(...nodes));
    net.set(hung, "hang");
    net.set(gone, "down");
    for (let r = 0; r < 4; r++) {
      net.clock.advance(1000);
      await late.gossip.round();
    }
    // the hung peer timed out every round while this node ran late: tried again, never suspected
    expect(late.gossip.stats.late).toBeGreaterThanOrEqual(3);
    expect(late.table.get(hung.identity.nodeId)?.state).toBe("alive");
    // the refused connection says the node is gone, late or not
    expect(late.table.get(gone.identity.nodeId)?.state).toBe("dead");
    // once this node keeps time again, the hung peer is suspected and declared dead
    lateMs = 0;
    for (let r = 0; r < 4; r++) {
      net.clock.advance(1000);
      await late.gossip.round();
    }
    expect(late.table.get(hung.identity.nodeId)?.state).toBe("dead");
  });

  test("tombstones are forgotten everywhere some time after TOMBSTONE_MS (10 min), not passed back and forth", async () => {
    const net = new Net();
    const nodes = await converged(net, 4);
    const victim = nodes[3] as TestNode;
    const others = nodes.filter((n) => n !== victim);
    net.set(victim, "down");
    for (let r = 0; r < 10; r++) {
      net.clock.advance(1000);
      await net.rounds(others);
    }
    for (const n of others) expect(n.table.get(victim.identity.nodeId)?.state).toBe("dead");
    // 30 simulated minutes, a round on every node every 30 s
    for (let r = 0; r < 60; r++) {
      net.clock.advance(30_000);
      await net.rounds(others);
    }
    for (const n of others) expect(n.table.get(victim.identity.nodeId)).toBeUndefined();
  });

  test("a node that comes back with its state rejoins everywhere with a newer version", async () => {
    const net = new Net();
    const nodes = await converged(net);
    const victim = nodes[4] as TestNode;
    const others = nodes.filter((n) => n !== victim);
    const oldVersion = victim.table.get(victim.identity.nodeId)?.version as number;
    net.set(victim, "down");
    for (let r = 0; r < 10; r++) {
      net.clock.advance(1000);
      await net.rounds(others);
    }
    for (const n of others) expect(n.table.get(victim.identity.nodeId)?.state).toBe("dead");
    // restart: same key, same state store, same port, a fresh process
    net.set(victim, "up");
    const back = net.add(victim.name, { identity: victim.identity, store: victim.store, port: victim.port });
    for (let r = 0; r < 6; r++) {
      await net.rounds([...others, back]);
      net.clock.advance(1000);
    }
    for (const n of [...others, back]) expect(liveIds(n)).toEqual(idsOf(...nodes));
    for (const n of others) expect(n.table.get(victim.identity.nodeId)?.version).toBeGreaterThan(oldVersion);
  });

  test("a node wrongly declared dead refutes the notice with a newer record", async () => {
    const net = new Net();
    const nodes = await converged(net, 3);
    const [a, b, c] = nodes as [TestNode, TestNode, TestNode];
    // c is unreachable for a only long enough to be declared dead by a
    net.set(c, "down");
    for (let r = 0; r < 7; r++) {
      net.clock.advance(1000);
      await a.gossip.round();
    }
    expect(a.table.get(c.identity.nodeId)?.state).toBe("dead");
    const version = a.table.get(c.identity.nodeId)?.version as number;
    net.set(c, "up");
    for (let r = 0; r < 6; r++) {
      await net.rounds(nodes);
      net.clock.advance(1000);
    }
    for (const n of nodes) {
      expect(n.table.get(c.identity.nodeId)?.state).toBe("alive");
      expect(n.table.get(c.identity.nodeId)?.version).toBeGreaterThan(version);
    }
    expect(b.table.views().map((v) => v.id)).toContain(c.identity.nodeId);
  });

  test("a node whose address now answers with another node's record is still declared dead", async () => {
    // node 4 is reinstalled: a new key on the same host:port. Its old id must not live on forever.
    const net = new Net();
    const nodes = await converged(net);
    const old = nodes[4] as TestNode;
    const others = nodes.filter((n) => n !== old);
    const fresh = net.add("node-4-new");
    net.move(fresh, old.port);
    fresh.store.peers.addSeed("127.0.0.1", (nodes[0] as TestNode).port, true, net.clock.now());
    for (let r = 0; r < 15; r++) {
      net.clock.advance(1000);
      await net.rounds([...others, fresh]);
    }
    for (const n of others) {
      expect(liveIds(n)).toContain(fresh.identity.nodeId);
      expect(liveIds(n)).not.toContain(old.identity.nodeId);
    }
  });
});

describe("steady state", () => {
  test("a node whose bootstrap list names itself does not re-sign its record every round", async () => {
    const net = new Net();
    const nodes = await converged(net, 3);
    const a = nodes[0] as TestNode;
    // the same bootstrap list on every node, the root node's own address included
    a.store.peers.addSeed("127.0.0.1", a.port, true, net.clock.now());
    await net.rounds(nodes, 2);
    const version = a.table.get(a.identity.nodeId)?.version;
    const syncs = net.calls.length;
    for (let r = 0; r < 5; r++) {
      net.clock.advance(1000);
      await net.rounds(nodes);
    }
    expect(a.table.get(a.identity.nodeId)?.version).toBe(version as number);
    expect(net.calls.slice(syncs).filter((c) => c.url.endsWith("/sync"))).toEqual([]);
  });

  test("a node listening on 0.0.0.0, seen at different addresses by different peers, does not re-sign every round", async () => {
    const net = new Net();
    const a = net.add("wildcard", { config: { serverHost: "0.0.0.0" } });
    const b = net.add("peer-b");
    const c = net.add("peer-c");
    net.seenAs.set(b.port, "10.0.0.7"); // b sees a over one interface
    net.seenAs.set(c.port, "192.168.1.7"); // c over another
    a.store.peers.addSeed("127.0.0.1", b.port, true, net.clock.now());
    a.store.peers.addSeed("127.0.0.1", c.port, true, net.clock.now());
    for (let r = 0; r < 4; r++) {
      await net.rounds([a, b, c]);
      net.clock.advance(1000);
    }
    expect(liveIds(b)).toContain(a.identity.nodeId);
    expect(b.table.record(a.identity.nodeId)?.record.addresses.length).toBe(1);
    const version = a.table.get(a.identity.nodeId)?.version;
    for (let r = 0; r < 6; r++) {
      await net.rounds([a, b, c]);
      net.clock.advance(1000);
    }
    expect(a.table.get(a.identity.nodeId)?.version).toBe(version as number);
  });
});

describe("bad peers", () => {
  test("a peer that accepts and never answers stalls nobody: rounds end, gossip goes on", async () => {
    // interval 200 ms: an exchange gives up after 160 ms
    const net = new Net({ gossipIntervalMs: 200 });
    const nodes = await converged(net, 3);
    const [a, b] = nodes as [TestNode, TestNode];
    const tarpit = net.add("tarpit");
    net.set(tarpit, "hang");
    a.store.peers.addSeed("127.0.0.1", tarpit.port, false, net.clock.now());
    const rounds = a.gossip.stats.rounds;
    const failures = a.gossip.stats.failures;
    const t0 = performance.now();
    await a.gossip.round();
    const took = performance.now() - t0;
    expect(took).toBeLessThan(1000); // bounded by the exchange timeout, not by the tarpit
    expect(a.gossip.stats.rounds).toBe(rounds + 1);
    expect(a.gossip.stats.failures).toBeGreaterThan(failures);
    // a seed that timed out is left alone for 2^(k−1) … 2^k − 1 rounds after k timeouts (pace.SeedPauses):
    // in the next 8 rounds it is tried 2 or 3 times, not 8, each within the base timeout
    const tries = () =>
      net.calls.filter((c) => c.from === a.name && new URL(c.url).port === String(tarpit.port)).length;
    const before = tries();
    for (let r = 0; r < 8; r++) {
      const t = performance.now();
      await a.gossip.round();
      expect(performance.now() - t).toBeLessThan(1000);
    }
    expect(tries() - before).toBeGreaterThanOrEqual(2);
    expect(tries() - before).toBeLessThanOrEqual(3);
    setNodeMetadata(b.store.meta, "still spreading");
    for (let r = 0; r < 4; r++) {
      await net.rounds(nodes);
      net.clock.advance(1000);
    }
    expect(a.table.views().find((v) => v.id === b.identity.nodeId)?.metadata).toBe("still spreading");
    expect(liveIds(a)).toEqual(idsOf(...nodes));
  });

  test("exchange: a caller record with a bad signature or someone else's id is a 400 and is not stored", async () => {
    const net = new Net();
    const [a] = (await converged(net, 2)) as [TestNode, TestNode];
    const mallory = generateIdentity();
    const victim = generateIdentity();
    const good = signedRecord(mallory, { name: "mallory" });
    const badSig = { ...good, record: { ...good.record, name: "tampered" } };
    const otherId = signedRecord(victim, { name: "impostor" }, mallory);
    for (const from of [badSig, otherId]) {
      const r = await post(a, "/exchange", { from, hash: "0".repeat(64) });
      expect(r.status).toBe(400);
      expect(JSON.stringify(r.json)).not.toContain(a.identity.nodeId); // no digest, no record given away
    }
    expect(liveIds(a)).not.toContain(mallory.nodeId);
    expect(liveIds(a)).not.toContain(victim.nodeId);
    // a well-formed, correctly signed caller is answered with this node's record and its digest
    const ok = await post(a, "/exchange", { from: good, hash: "0".repeat(64) });
    expect(ok.status).toBe(200);
    expect(ok.json.same).toBe(false);
    expect((ok.json.from as SignedRecord).record.id).toBe(a.identity.nodeId);
    expect(liveIds(a)).toContain(mallory.nodeId);
  });

  test("exchange: a signer sending another node's (valid) record as its own is a 400; it cannot keep that node alive", async () => {
    const net = new Net();
    const [a, b] = (await converged(net, 2)) as [TestNode, TestNode];
    const mallory = generateIdentity();
    const victimRecord = b.table.record(b.identity.nodeId) as SignedRecord; // genuine, signed by b
    const res = await a.app.request("/v1/p2p/exchange", {
      method: "POST",
      headers: { "content-type": "application/json", "x-p2prc-node": mallory.nodeId },
      body: JSON.stringify({ from: victimRecord, hash: "0".repeat(64) }),
    });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("not the record of the node that signed");
    // and without a record, a caller this node knows nothing of is told to send one
    const bare = await a.app.request("/v1/p2p/exchange", {
      method: "POST",
      headers: { "content-type": "application/json", "x-p2prc-node": mallory.nodeId },
      body: JSON.stringify({ hash: "0".repeat(64) }),
    });
    expect(bare.status).toBe(400);
    expect(await bare.text()).toContain("from: required");
  });

  test("sync: a signer sending another node's (valid) record as `from` is a 400; that node is not taken", async () => {
    const net = new Net();
    const [a] = (await converged(net, 2)) as [TestNode, TestNode];
    const mallory = generateIdentity();
    const sockpuppet = generateIdentity(); // a key mallory made up, posing as a node that called
    const res = await a.app.request("/v1/p2p/sync", {
      method: "POST",
      headers: { "content-type": "application/json", "x-p2prc-node": mallory.nodeId },
      body: JSON.stringify({ from: signedRecord(sockpuppet), records: [], deaths: [], want: [] }),
    });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("not the record of the node that signed");
    expect(liveIds(a)).not.toContain(sockpuppet.nodeId);
  });

  test("sync: forged records are dropped, a correctly signed one is taken; a forgery cannot take over a real node", async () => {
    // the stranger is vouched for (trusted): its record is taken at once, with no probe (flood.test.ts
    // has the records of nodes nobody vouches for)
    const stranger = generateIdentity();
    const net = new Net({ trusted: [stranger.nodeId] });
    const nodes = (await converged(net, 2)) as [TestNode, TestNode];
    const [a, b] = nodes;
    const mallory = generateIdentity();
    const from = signedRecord(mallory, { name: "mallory" });
    const honest = signedRecord(stranger, { name: "stranger" });
    const tampered = { ...honest, record: { ...honest.record, metadata: "tampered", version: 2 } };
    // b's id, a newer version, signed by mallory
    const takeover = signedRecord(b.identity, { name: "owned", version: Number.MAX_SAFE_INTEGER }, mallory);
    const r = await post(a, "/sync", { from, records: [tampered, takeover], deaths: [], want: [] });
    expect([200, 400]).toContain(r.status);
    expect(liveIds(a)).not.toContain(stranger.nodeId);
    expect(a.table.record(b.identity.nodeId)?.record.name).toBe("node-1");
    // a forged death notice for b in the name of a (known) node
    const body = {
      id: b.identity.nodeId,
      version: Number.MAX_SAFE_INTEGER,
      reporter: a.identity.nodeId,
      at: 0,
    };
    const fakeDeath = { ...body, signature: mallory.signJson(body) };
    await post(a, "/sync", { from, records: [], deaths: [fakeDeath], want: [] });
    expect(a.table.get(b.identity.nodeId)?.state).toBe("alive");
    // the honest record is taken
    const ok = await post(a, "/sync", { from, records: [honest], deaths: [], want: [] });
    expect(ok.status).toBe(200);
    expect(a.table.views().find((v) => v.id === stranger.nodeId)?.name).toBe("stranger");
  });

  test("sync answers `want` with records it holds, and never with another node's private data", async () => {
    const net = new Net();
    const [a, b] = (await converged(net, 2)) as [TestNode, TestNode];
    const mallory = generateIdentity();
    const r = await post(a, "/sync", {
      from: signedRecord(mallory),
      records: [],
      deaths: [],
      want: [b.identity.nodeId, generateIdentity().nodeId],
    });
    expect(r.status).toBe(200);
    const records = r.json.records as SignedRecord[];
    expect(records.map((x) => x.record.id)).toEqual([b.identity.nodeId]);
    expect(records[0]?.signature).toBe(b.table.record(b.identity.nodeId)?.signature as string);
  });
});
