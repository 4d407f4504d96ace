// Gossip flood (issue 19, finding 2): a member pushes thousands of valid self-signed records. The IP
// table and state.db must stay bounded, exchanges small and quick, real members must stay, and a new
// node must still find a real one. In-process nodes (p2p/test-net.ts), a manual clock, a real state.db.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateIdentity, type Identity } from "../core/index.ts";
import { openStore } from "../store/index.ts";
import { signedRecord } from "./fixtures.ts";
import { liveIds, Net, type TestNode } from "./test-net.ts";
import type { SignedRecord } from "./types.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `n` valid records of fresh keys, at addresses nobody answers at. */
function fakeRecords(n: number, base = 20000): SignedRecord[] {
  return Array.from({ length: n }, (_, i) =>
    signedRecord(generateIdentity(), {
      name: `flood-${i}`,
      addresses: [{ host: "127.0.0.1", port: base + (i % 40000) }],
      issuedAt: 0,
    }),
  );
}

async function postAs(node: TestNode, who: Identity | undefined, path: string, body: unknown) {
  const res = await node.app.request(`/v1/p2p${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(who ? { "x-p2prc-node": who.nodeId } : {}) },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, bytes: text.length, json: JSON.parse(text) as Record<string, unknown> };
}

function dbBytes(path: string): number {
  let total = 0;
  for (const f of [path, `${path}-wal`]) {
    try {
      total += statSync(f).size;
    } catch {}
  }
  return total;
}

describe("gossip flood", () => {
  test("two syncs of 2500 valid self-signed records each: table and state.db bounded, exchanges small and fast, a new node finds a real one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "p2prc-flood-"));
    dirs.push(dir);
    const dbPath = join(dir, "state.db");
    const net = new Net();
    const victim = net.add("victim", { store: openStore(dbPath) });
    const real = net.add("real");
    real.store.peers.addSeed("127.0.0.1", victim.port, true, net.clock.now());
    for (let r = 0; r < 4; r++) {
      await net.rounds([victim, real]);
      net.clock.advance(1000);
    }
    expect(liveIds(victim)).toContain(real.identity.nodeId);
    const dbBefore = dbBytes(dbPath);

    // the flood: a member (any signer is one in the test network) pushes 2 × 2500 records
    const mallory = generateIdentity();
    const from = signedRecord(mallory, { name: "mallory", addresses: [{ host: "127.0.0.1", port: 2 }] });
    const bodies = [0, 1].map((i) => ({
      from,
      records: fakeRecords(2500, 20000 + i * 2500),
      deaths: [],
      want: [],
    }));
    const t0 = performance.now();
    for (const body of bodies) expect((await postAs(victim, mallory, "/sync", body)).status).toBe(200);
    const floodMs = performance.now() - t0;
    const tableAfterFlood = victim.table.live().length;

    // a few rounds: what was pushed is probed (nobody answers at those addresses) and drained
    for (let r = 0; r < 5; r++) {
      await net.rounds([victim, real]);
      net.clock.advance(1000);
    }
    const tableAfterRounds = victim.table.live().length;
    const rowsAfterRounds = victim.store.peers.list().length;
    const db = dbBytes(dbPath);

    // a new real node seeded from the victim: bounded answers, quick, and it learns the real member
    const newcomer = net.add("newcomer");
    newcomer.store.peers.addSeed("127.0.0.1", victim.port, true, net.clock.now());
    let learnedIn = -1;
    let maxAnswer = 0;
    let maxMs = 0;
    for (let r = 1; r <= 6 && learnedIn < 0; r++) {
      const received = newcomer.gossip.stats.bytesReceived;
      const t = performance.now();
      await newcomer.gossip.round();
      maxMs = Math.max(maxMs, performance.now() - t);
      maxAnswer = Math.max(maxAnswer, newcomer.gossip.stats.bytesReceived - received);
      await net.rounds([victim, real]);
      net.clock.advance(1000);
      if (liveIds(newcomer).includes(real.identity.nodeId)) learnedIn = r;
    }
    // and the attacker asking for everything gets a bounded answer
    const want = victim.table.live().map((r) => r.id);
    const greedy = await postAs(victim, mallory, "/sync", { from, records: [], deaths: [], want });
    const digest = await postAs(victim, mallory, "/exchange", { from, hash: "0".repeat(64) });

    console.log(
      `flood: ${Math.round(floodMs)} ms to push; table ${tableAfterFlood} after the flood, ${tableAfterRounds} (${rowsAfterRounds} rows) after 5 rounds; ` +
        `state.db ${dbBefore} → ${db} bytes; newcomer: largest round ${maxAnswer} bytes in, slowest round ${Math.round(maxMs)} ms, ` +
        `learned the real node in round ${learnedIn}; sync answer ${greedy.bytes} bytes, exchange answer ${digest.bytes} bytes`,
    );
    expect(tableAfterFlood).toBeLessThanOrEqual(10);
    expect(tableAfterRounds).toBeLessThanOrEqual(10);
    expect(rowsAfterRounds).toBeLessThanOrEqual(10);
    expect(db).toBeLessThan(1024 * 1024);
    expect(learnedIn).toBeGreaterThan(0);
    expect(learnedIn).toBeLessThanOrEqual(4);
    expect(maxAnswer).toBeLessThan(200_000);
    expect(maxMs).toBeLessThan(800);
    expect(greedy.bytes).toBeLessThan(200_000);
    expect(digest.bytes).toBeLessThan(200_000);
    expect(liveIds(victim)).toContain(real.identity.nodeId);
  }, 60_000);

  test("every signer a member (open network), 200 fresh keys calling /exchange: the table stays within maxPeers, reached and vouched nodes stay", async () => {
    const vouched = generateIdentity();
    const net = new Net({ maxPeers: 16, trusted: [vouched.nodeId] });
    const victim = net.add("victim");
    const reals = [net.add("real-1"), net.add("real-2"), net.add("real-3")];
    for (const r of reals) r.store.peers.addSeed("127.0.0.1", victim.port, true, net.clock.now());
    for (let r = 0; r < 4; r++) {
      await net.rounds([victim, ...reals]);
      net.clock.advance(1000);
    }
    // a trusted node nobody can reach (yet): vouched for, so taken at once and never dropped
    const mallory = generateIdentity();
    const from = signedRecord(mallory, { name: "mallory", addresses: [{ host: "127.0.0.1", port: 2 }] });
    const vouchedRecord = signedRecord(vouched, {
      name: "vouched",
      addresses: [{ host: "127.0.0.1", port: 3 }],
    });
    await postAs(victim, mallory, "/sync", { from, records: [vouchedRecord], deaths: [], want: [] });
    expect(liveIds(victim)).toContain(vouched.nodeId);

    let max = 0;
    for (const [i, rec] of fakeRecords(200).entries()) {
      const who = { nodeId: rec.record.id } as Identity;
      const r = await postAs(victim, who, "/exchange", { from: rec, have: 1, hash: "0".repeat(64) });
      expect(r.status).toBe(200);
      max = Math.max(max, victim.table.size());
      if (i % 50 === 49) {
        await net.rounds([victim, ...reals]);
        net.clock.advance(1000);
      }
    }
    expect(max).toBeLessThanOrEqual(16);
    // what each caller said it holds of the victim's record is kept for at most maxPeers callers
    expect(
      (victim.gossip as unknown as { peerHolds: Map<string, number> }).peerHolds.size,
    ).toBeLessThanOrEqual(16);
    const held = liveIds(victim);
    for (const r of reals) expect(held).toContain(r.identity.nodeId);
    expect(held).toContain(vouched.nodeId);
  }, 30_000);

  test("a state.db filled before the bound (5000 rows) drains to maxPeers in one round", async () => {
    const net = new Net();
    const victim = net.add("victim");
    const real = net.add("real");
    real.store.peers.addSeed("127.0.0.1", victim.port, true, net.clock.now());
    await net.rounds([victim, real], 3);
    const now = net.clock.now();
    // rows as an unbounded node stored them (the signatures are not checked again when read)
    const template = signedRecord(generateIdentity(), { addresses: [{ host: "127.0.0.1", port: 4 }] });
    for (let i = 0; i < 5000; i++) {
      const id = i.toString(16).padStart(64, "f");
      victim.store.peers.put({
        id,
        record: JSON.stringify({ ...template, record: { ...template.record, id } }),
        version: 1,
        state: "alive",
        lastSeen: now,
        lastTried: 0,
        failures: 0,
        latencyMs: undefined,
        rttSamples: [],
        updatedAt: now,
      });
    }
    const t0 = performance.now();
    await victim.gossip.round();
    console.log(
      `an over-full table: 5002 rows → ${victim.table.size()} in one round of ${Math.round(performance.now() - t0)} ms`,
    );
    expect(victim.table.size()).toBeLessThanOrEqual(1000); // the default maxPeers
    expect(liveIds(victim)).toContain(real.identity.nodeId);
  });

  test("a want of 6000 ids (a peer with a large table) is answered, with at most gossipMaxRecords records", async () => {
    const net = new Net({ gossipMaxRecords: 5 });
    const victim = net.add("victim");
    const reals = Array.from({ length: 8 }, (_, i) => net.add(`real-${i}`));
    for (const r of reals) r.store.peers.addSeed("127.0.0.1", victim.port, true, net.clock.now());
    await net.rounds([victim, ...reals], 2);
    const mallory = generateIdentity();
    const from = signedRecord(mallory, { name: "mallory", addresses: [{ host: "127.0.0.1", port: 2 }] });
    const want = [
      ...reals.map((r) => r.identity.nodeId),
      ...Array.from({ length: 6000 - reals.length }, (_, i) => i.toString(16).padStart(64, "e")),
    ];
    const r = await postAs(victim, mallory, "/sync", { from, records: [], deaths: [], want });
    expect(r.status).toBe(200);
    expect((r.json.records as SignedRecord[]).length).toBe(5);
  });
});
