// Gossip's decisions about peers and about this node, on plain data (no network, no store): target
// choice, death timing, the heartbeat's versions, address observation.
import { describe, expect, test } from "bun:test";
import { ManualClock } from "../core/index.ts";
import { recordOf } from "./fixtures.ts";
import {
  type Candidate,
  chooseTargets,
  deadAfterFailure,
  deathBody,
  nextRecord,
  ObservedAddress,
  PeerHolds,
  pick,
  type Random,
  reachable,
  type SeedAddress,
  selfAddresses,
  silentWithoutAddress,
  type TargetChoice,
  TryOrder,
} from "./gossip-core.ts";
import type { NodeRecord } from "./types.ts";

/** A repeatable random source (a linear congruential generator). */
function seeded(seed = 1): Random {
  let s = seed;
  return () => {
    s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
    return s / 2 ** 31;
  };
}

const SELF = "self".padEnd(64, "0");

function record(id: string, port: number, over: Partial<NodeRecord> = {}): NodeRecord {
  return { ...recordOf({ nodeId: id } as never), addresses: [{ host: "127.0.0.1", port }], ...over };
}

/** A live peer `n`, last tried at `lastTried`, at port 9000 + n. */
function peer(n: number, over: Partial<Candidate> = {}): Candidate {
  const id = `p${n}`.padEnd(64, "0");
  return { id, state: "alive", lastTried: 0, lastSeen: 0, record: record(id, 9000 + n), ...over };
}

function choose(over: Partial<TargetChoice>): ReturnType<typeof chooseTargets> {
  return chooseTargets({
    self: SELF,
    peers: [],
    seeds: [],
    fanout: 3,
    tls: false,
    all: false,
    random: seeded(),
    ...over,
  });
}

describe("target choice", () => {
  test("every suspect is contacted, first, and fanout alive peers besides", () => {
    const peers = [
      ...Array.from({ length: 10 }, (_, i) => peer(i)),
      peer(20, { state: "suspect" }),
      peer(21, { state: "suspect" }),
    ];
    const targets = choose({ peers });
    expect(targets.map((t) => t.id?.slice(0, 3))).toEqual(expect.arrayContaining(["p20", "p21"]));
    expect(targets.slice(0, 2).map((t) => t.id?.slice(0, 3))).toEqual(["p20", "p21"]);
    expect(targets).toHaveLength(2 + 3);
    expect(targets[0]).toEqual({ url: "http://127.0.0.1:9020", id: peers[10]?.id, cert: undefined });
  });

  test("a round reads the target (URL, certificate) of the chosen peers only, not of the whole table (issue 12)", () => {
    let certReads = 0;
    const peers = Array.from({ length: 100 }, (_, i) => {
      const p = peer(i, { lastTried: i % 7 });
      const rec = p.record as NodeRecord;
      const counted = { ...rec };
      Object.defineProperty(counted, "cert", {
        get: () => {
          certReads++;
          return undefined;
        },
        enumerable: true,
      });
      return { ...p, record: counted };
    });
    expect(choose({ peers })).toHaveLength(3);
    expect(certReads).toBe(3);
  });

  test("the choice is the one a sort of the table by (last tried, jitter) gives, for any random source", () => {
    for (let seed = 1; seed < 50; seed++) {
      const random = seeded(seed);
      // (ids p100…p139: peer(1) and peer(10) would share an id)
      const peers = Array.from({ length: 40 }, (_, i) =>
        peer(100 + i, { lastTried: Math.floor(random() * 5), state: random() < 0.1 ? "suspect" : "alive" }),
      );
      // the choice as it was made before: every peer's target, a full sort, the first 2 × fanout
      const reference = (r: Random) => {
        const withUrl = reachable(SELF, peers);
        const jitter = new Map(withUrl.map((w) => [w.peer.id, r()]));
        const alive = withUrl
          .filter((w) => w.peer.state === "alive")
          .sort(
            (a, b) =>
              a.peer.lastTried - b.peer.lastTried ||
              (jitter.get(a.peer.id) as number) - (jitter.get(b.peer.id) as number),
          );
        const suspects = withUrl.filter((w) => w.peer.state === "suspect").map((w) => w.target);
        const pool = alive.slice(0, 6);
        for (let i = pool.length - 1; i > 0; i--) {
          const j = Math.floor(r() * (i + 1));
          [pool[i], pool[j]] = [pool[j] as (typeof pool)[number], pool[i] as (typeof pool)[number]];
        }
        return [...suspects, ...pool.slice(0, 3).map((w) => w.target)];
      };
      expect(choose({ peers, random: seeded(seed + 100) })).toEqual(reference(seeded(seed + 100)));
    }
  });

  test("the alive peers come from the least recently tried (a pool of 2 × fanout, at least 4)", () => {
    // p0..p5 tried long ago, p6..p19 just now: whatever the random source, only p0..p5 are picked
    const peers = Array.from({ length: 20 }, (_, i) => peer(i, { lastTried: i < 6 ? 100 : 5000 }));
    const early = new Set(peers.slice(0, 6).map((p) => p.id));
    for (let seed = 1; seed < 30; seed++) {
      const ids = choose({ peers, random: seeded(seed) }).map((t) => t.id ?? "");
      expect(ids).toHaveLength(3);
      for (const id of ids) expect(early.has(id)).toBe(true);
    }
    // fanout 1: a pool of 4, not 2
    const seen = new Set<string>();
    const staggered = Array.from({ length: 10 }, (_, i) => peer(i, { lastTried: i }));
    for (let seed = 1; seed < 200; seed++)
      for (const t of choose({ peers: staggered, fanout: 1, random: seeded(seed) })) seen.add(t.id ?? "");
    expect([...seen].map((id) => id.slice(0, 2)).sort()).toEqual(["p0", "p1", "p2", "p3"]);
  });

  test("ties (peers never tried) are broken at random: two nodes do not pick the same peers", () => {
    const peers = Array.from({ length: 30 }, (_, i) => peer(i));
    const a = choose({ peers, random: seeded(1) }).map((t) => t.id);
    const b = choose({ peers, random: seeded(2) }).map((t) => t.id);
    expect(a).toHaveLength(3);
    expect(a).not.toEqual(b);
  });

  test("never this node, nor a peer without an address or a record; all = every reachable peer", () => {
    const peers = [
      peer(1),
      peer(2, { record: undefined }),
      peer(3, { record: record("p3", 1, { addresses: [] }) }),
      { ...peer(4), id: SELF },
      peer(5, { state: "suspect" }),
    ];
    const all = choose({ peers, all: true });
    expect(all.map((t) => t.id?.slice(0, 2))).toEqual(["p1", "p5"]);
    expect(reachable(SELF, peers).map((r) => r.peer.id.slice(0, 2))).toEqual(["p1", "p5"]);
  });

  test("a relayed peer is never dialed (it contacts this node itself), even as a suspect", () => {
    const peers = [
      peer(1),
      peer(2, { record: record("p2", 9002, { reach: "relay" }) }),
      peer(3, { state: "suspect", record: record("p3", 9003, { reach: "relay" }) }),
    ];
    expect(choose({ peers, all: true }).map((t) => t.id?.slice(0, 2))).toEqual(["p1"]);
    expect(choose({ peers }).map((t) => t.id?.slice(0, 2))).toEqual(["p1"]);
  });

  test("a record with a certificate is reached over TLS, pinned to it", () => {
    const [t] = choose({ peers: [peer(1, { record: record("p1", 9001, { cert: "PEM" }) })] });
    expect(t).toMatchObject({ url: "https://127.0.0.1:9001", cert: "PEM" });
  });

  test("seeds: contacted every round until their node is alive in the table; never this node's own address", () => {
    const known = peer(1);
    const seeds: SeedAddress[] = [
      { host: "10.0.0.1", port: 8088, nodeId: undefined }, // never answered: tried
      { host: "10.0.0.2", port: 8088, nodeId: known.id }, // its node is alive here: skipped
      { host: "10.0.0.3", port: 8088, nodeId: SELF }, // this node itself: skipped
      { host: "10.0.0.4", port: 8088, nodeId: "gone".padEnd(64, "0") }, // answered once, not in the table: tried
      { host: "::1", port: 8088, nodeId: undefined },
    ];
    const targets = choose({ peers: [known], seeds, tls: true }).filter((t) => t.seed);
    expect(targets).toEqual([
      { url: "https://10.0.0.1:8088", seed: { host: "10.0.0.1", port: 8088 }, id: undefined },
      { url: "https://10.0.0.4:8088", seed: { host: "10.0.0.4", port: 8088 }, id: seeds[3]?.nodeId },
      { url: "https://[::1]:8088", seed: { host: "::1", port: 8088 }, id: undefined },
    ]);
    // a seed whose node is only suspect here is still tried (it may have moved)
    const suspect = choose({ peers: [{ ...known, state: "suspect" }], seeds: [seeds[1] as SeedAddress] });
    expect(suspect.filter((t) => t.seed)).toHaveLength(1);
    // a seed whose node is alive but without a record held is tried
    const noRecord = choose({ peers: [{ ...known, record: undefined }], seeds: [seeds[1] as SeedAddress] });
    expect(noRecord.filter((t) => t.seed)).toHaveLength(1);
  });

  test("pick: those `first` holds first, then a random sample; all when they fit", () => {
    const ids = Array.from({ length: 10 }, (_, i) => `n${i}`);
    expect(pick(ids, 10, () => false, seeded())).toBe(ids);
    const picked = pick(ids, 4, (id) => id === "n7" || id === "n9", seeded());
    expect(picked.slice(0, 2)).toEqual(["n7", "n9"]);
    expect(picked).toHaveLength(4);
    expect(new Set(picked).size).toBe(4);
  });
});

describe("try order", () => {
  const peers = Array.from({ length: 10 }, (_, i) => peer(i, { lastTried: 100 - i }));
  const byId = new Map(peers.map((p) => [p.id, p]));

  test("least recently tried first; tried peers go to the back: every peer once per pass", () => {
    const order = new TryOrder();
    order.sync(1, () => peers, seeded());
    const seen: string[] = [];
    for (let round = 0; round < 5; round++) {
      const front = order.front(2, (id) => byId.get(id));
      if (round === 0) expect(front.map((p) => p.lastTried)).toEqual([91, 92]);
      order.tried(front.map((p) => p.id));
      seen.push(...front.map((p) => p.id));
    }
    expect(new Set(seen).size).toBe(10);
    // the next pass starts again with the first tried
    expect(order.front(1, (id) => byId.get(id))[0]?.id).toBe(seen[0]);
  });

  test("rebuilt only when the version changes; ids refused are dropped until tried or rebuilt", () => {
    const order = new TryOrder();
    let builds = 0;
    const all = () => {
      builds++;
      return peers;
    };
    order.sync("a", all, seeded());
    order.sync("a", all, seeded());
    expect(builds).toBe(1);
    const gone = peers[9]?.id as string; // the least recently tried
    expect(order.front(1, (id) => (id === gone ? undefined : byId.get(id)))[0]?.id).not.toBe(gone);
    expect(order.size).toBe(9);
    order.tried([gone]); // a suspect tried this round comes back, at the back
    expect(order.size).toBe(10);
    order.sync("b", all, seeded());
    expect(builds).toBe(2);
    expect(order.front(1, (id) => byId.get(id))[0]?.id).toBe(gone);
  });
});

describe("try order with a window (more alive peers than a keep-alive pool holds)", () => {
  const many = Array.from({ length: 100 }, (_, i) =>
    peer(i, { id: `q${String(i).padStart(3, "0")}`.padEnd(64, "0"), lastTried: 1000 - i }),
  );
  const manyById = new Map(many.map((p) => [p.id, p]));
  /**
   * `rounds` quiet rounds (a pool of 4 from the front, one of them contacted, as gossip's do); for each
   * contact, how many other peers were contacted since the last contact of the same peer (its reuse
   * distance: a keep-alive pool of P connections, closing the longest idle, kept its connection only if
   * fewer than P).
   */
  const run = (order: TryOrder, rounds: number) => {
    const random = seeded();
    order.sync(1, () => many, random);
    const contacts: string[] = [];
    const distances: number[] = [];
    const lastAt = new Map<string, number>();
    const left: { id: string; contactedBefore: boolean }[] = [];
    for (let r = 0; r < rounds; r++) {
      const pool = order.front(4, (id) => manyById.get(id));
      const chosen = pool[Math.floor(random() * pool.length)] as Candidate;
      const at = lastAt.get(chosen.id);
      if (at !== undefined) distances.push(new Set(contacts.slice(at + 1)).size);
      lastAt.set(chosen.id, contacts.length);
      contacts.push(chosen.id);
      order.tried([chosen.id]);
      for (const id of order.left()) left.push({ id, contactedBefore: contacts.includes(id) });
    }
    return { contacts, distances, left };
  };

  test("without a window (every peer in turn) a peer's contacts are ~99 others apart: a pool of 64 keeps none", () => {
    const { distances } = run(new TryOrder(), 600);
    const kept = distances.filter((d) => d < 64).length;
    expect(kept / distances.length).toBeLessThan(0.05);
  });

  // every 4 rounds (the first version), every 30 (gossip's ROTATE_MS at 1 s rounds): a peer that comes into
  // the window again was last contacted long ago, one miss a rotation
  test.each([
    [4, 0.7],
    [30, 0.95],
  ])("with a window of 48 rotated every %i rounds: more than %d of contacts find their connection; every peer comes round", (every, share) => {
    const order = new TryOrder({ limit: 48, rotateEvery: every });
    const rounds = 48 + (100 - 48) * every + 50;
    const { contacts, distances, left } = run(order, rounds);
    const kept = distances.filter((d) => d < 64).length;
    expect(kept / distances.length).toBeGreaterThan(share);
    expect(new Set(contacts).size).toBe(100);
    expect(order.cycle).toBe(48);
    // one peer leaves the window every `every` rounds
    expect(left.length).toBe(Math.floor(rounds / every));
    // none leaves before it was contacted
    expect(left.filter((l) => !l.contactedBefore)).toEqual([]);
  });

  test("no window while the alive peers fit in it: every peer once per pass, as before", () => {
    const order = new TryOrder({ limit: 48, rotateEvery: 4 });
    const peersById = new Map(
      Array.from({ length: 10 }, (_, i) => peer(i, { lastTried: 100 - i })).map((p) => [p.id, p]),
    );
    order.sync(1, () => [...peersById.values()], seeded());
    const seen: string[] = [];
    for (let r = 0; r < 5; r++) {
      const front = order.front(2, (id) => peersById.get(id));
      order.tried(front.map((p) => p.id));
      seen.push(...front.map((p) => p.id));
    }
    expect(new Set(seen).size).toBe(10);
    expect(order.left()).toEqual([]);
    expect(order.cycle).toBe(10);
  });
});

describe("death detection", () => {
  test("a failed peer is declared dead only after 2 failures and suspectTimeoutMs without contact", () => {
    const clock = new ManualClock();
    const lastSeen = clock.now();
    clock.advance(4999);
    expect(deadAfterFailure({ failures: 5, lastSeen }, clock.now(), 5000)).toBe(false);
    clock.advance(1);
    expect(deadAfterFailure({ failures: 1, lastSeen }, clock.now(), 5000)).toBe(false);
    expect(deadAfterFailure({ failures: 2, lastSeen }, clock.now(), 5000)).toBe(true);
  });

  test("a record without an address is dropped after 3 suspect timeouts; its record is read only then", () => {
    const clock = new ManualClock();
    const lastSeen = clock.now();
    let reads = 0;
    const none = () => {
      reads++;
      return record("x", 1, { addresses: [] });
    };
    clock.advance(3 * 5000 - 1);
    expect(silentWithoutAddress(lastSeen, none, clock.now(), 5000)).toBe(false);
    expect(reads).toBe(0);
    clock.advance(1);
    expect(silentWithoutAddress(lastSeen, none, clock.now(), 5000)).toBe(true);
    expect(silentWithoutAddress(lastSeen, () => record("x", 1), clock.now(), 5000)).toBe(false);
    expect(silentWithoutAddress(lastSeen, () => undefined, clock.now(), 5000)).toBe(false);
    // a relayed node, with an address nobody can dial, the same
    const relayed = () => record("x", 1, { reach: "relay" });
    expect(silentWithoutAddress(lastSeen, relayed, clock.now(), 5000)).toBe(true);
    expect(silentWithoutAddress(lastSeen, relayed, clock.now() - 1, 5000)).toBe(false);
  });

  test("the death notice names the version held and the time; none for a row already dead", () => {
    expect(deathBody({ id: "a", version: 7, state: "suspect" }, "me", 123)).toEqual({
      id: "a",
      version: 7,
      reporter: "me",
      at: 123,
    });
    expect(deathBody({ id: "a", version: 7, state: "dead" }, "me", 123)).toBeUndefined();
  });
});

describe("heartbeat", () => {
  const content = (() => {
    const { version: _v, issuedAt: _i, ...rest } = record(SELF, 8088);
    return rest;
  })();

  test("the first record is versioned at least the wall clock, above every version used or seen", () => {
    const clock = new ManualClock();
    const base = { content, current: undefined, force: false, now: clock.now() };
    expect(nextRecord({ ...base, stored: 0, seen: 0 })).toMatchObject({
      version: clock.now(),
      issuedAt: clock.now(),
    });
    const ahead = clock.now() + 10_000;
    expect(nextRecord({ ...base, stored: ahead, seen: 0 })?.version).toBe(ahead + 1);
    expect(nextRecord({ ...base, stored: 0, seen: ahead + 5 })?.version).toBe(ahead + 6);
  });

  test("nothing changed: no new version, unless forced (to refute a death notice)", () => {
    const clock = new ManualClock();
    const current = nextRecord({
      content,
      current: undefined,
      force: false,
      stored: 0,
      seen: 0,
      now: clock.now(),
    });
    clock.advance(1000);
    const again = {
      content: { ...content },
      current,
      stored: current?.version ?? 0,
      seen: 0,
      now: clock.now(),
    };
    expect(nextRecord({ ...again, force: false })).toBeUndefined();
    expect(nextRecord({ ...again, force: true })?.version).toBe(clock.now());
    const changed = nextRecord({ ...again, force: false, content: { ...content, metadata: "gpu" } });
    expect(changed).toMatchObject({ metadata: "gpu", version: clock.now() });
    // a clock that went back: still above the version held
    const back = nextRecord({ ...again, force: true, now: clock.now() - 60_000 });
    expect(back?.version).toBe((current?.version ?? 0) + 1);
  });
});

describe("addresses", () => {
  const listen = { advertiseAddress: undefined, serverHost: "0.0.0.0", serverPort: 8088 };

  test("advertiseAddress first, then the host listened on, then the observed host", () => {
    expect(selfAddresses({ ...listen, advertiseAddress: "[2001:db8::1]:9000" }, "10.0.0.9")).toEqual([
      { host: "2001:db8::1", port: 9000 },
    ]);
    expect(selfAddresses({ ...listen, advertiseAddress: "198.51.100.4" }, undefined)).toEqual([
      { host: "198.51.100.4", port: 8088 },
    ]);
    expect(selfAddresses({ ...listen, serverHost: "192.0.2.7" }, "10.0.0.9")).toEqual([
      { host: "192.0.2.7", port: 8088 },
    ]);
    expect(selfAddresses(listen, "10.0.0.9")).toEqual([{ host: "10.0.0.9", port: 8088 }]);
    expect(selfAddresses({ ...listen, serverHost: "::" }, undefined)).toEqual([]);
  });

  test("the first observed address is kept while one of the last 10 reports confirms it", () => {
    const seen = new ObservedAddress();
    expect(seen.host).toBeUndefined();
    seen.observe("::ffff:10.0.0.1");
    expect(seen.host).toBe("10.0.0.1");
    // other peers see another interface: no flip while 10.0.0.1 is among the last 10 reports
    for (let i = 0; i < 9; i++) seen.observe("10.0.0.2");
    expect(seen.host).toBe("10.0.0.1");
    seen.observe("10.0.0.1");
    for (let i = 0; i < 9; i++) seen.observe(i % 3 === 0 ? "10.0.0.3" : "10.0.0.2");
    expect(seen.host).toBe("10.0.0.1");
    // a real move: nobody reports the old address any more; the most reported one is taken
    seen.observe("10.0.0.2");
    expect(seen.host).toBe("10.0.0.2");
  });

  test("peer holds: the least recently noted are forgotten beyond max", () => {
    const holds = new PeerHolds(2);
    holds.note("a", 1);
    holds.note("b", 1);
    holds.note("a", 2); // a is noted again: b is now the oldest
    holds.note("c", 1);
    expect([holds.get("a"), holds.get("b"), holds.get("c")]).toEqual([2, undefined, 1]);
    expect(holds.size).toBe(2);
    holds.delete("a");
    expect(holds.get("a")).toBeUndefined();
  });
});
