// Reachability (p2p/reach.ts): the decision, whom to ask, the asking side and the dial-back side, with
// a fake network (a fetch that answers by URL) and a manual clock. The real NAT is test/nat.test.ts.
import { beforeEach, describe, expect, spyOn, test } from "bun:test";
import { generateIdentity, type Identity, isP2prcError, ManualClock, memoryLogger } from "../core/index.ts";
import { openStore } from "../store/index.ts";
import { signedRecord } from "./fixtures.ts";
import {
  decideReach,
  dialbackCandidates,
  type NatMode,
  type ReachDeps,
  ReachService,
  type ReachState,
} from "./reach.ts";
import { PeerTable } from "./table.ts";
import { Net, type TestNode } from "./test-net.ts";
import type { NodeRecord, SignedRecord } from "./types.ts";

describe("decideReach", () => {
  test("the config forces it; else one member that dialed back makes it direct, all failing relay", () => {
    expect(decideReach("true", "direct", [true])).toBe("relay");
    expect(decideReach("false", "relay", [false, false])).toBe("direct");
    expect(decideReach("auto", "direct", [false])).toBe("relay");
    expect(decideReach("auto", "direct", [false, false])).toBe("relay");
    expect(decideReach("auto", "relay", [false, true])).toBe("direct");
    expect(decideReach("auto", "relay", [true])).toBe("direct");
  });

  test("no answer keeps what it was", () => {
    expect(decideReach("auto", "relay", [])).toBe("relay");
    expect(decideReach("auto", "direct", [])).toBe("direct");
  });
});

let clock: ManualClock;
let self: Identity;
let table: PeerTable;

beforeEach(() => {
  clock = new ManualClock();
  self = generateIdentity();
  table = new PeerTable(openStore(":memory:").peers, self.nodeId, clock);
});

/** Puts a peer's signed record in the table (as gossip would), optionally with a measured latency. */
function peer(over: Partial<NodeRecord> = {}, latencyMs?: number): { id: Identity; signed: SignedRecord } {
  const id = generateIdentity();
  const signed = signedRecord(id, over);
  table.merge(signed);
  if (latencyMs !== undefined) table.markContact(id.nodeId, latencyMs);
  return { id, signed };
}

describe("dialbackCandidates", () => {
  test("vouched, direct, live peers with an address, lowest latency first, at most `max`", () => {
    const slow = peer({ addresses: [{ host: "10.0.0.2", port: 8088 }] }, 40);
    const fast = peer({ addresses: [{ host: "10.0.0.3", port: 8088 }] }, 5);
    const unmeasured = peer({ addresses: [{ host: "10.0.0.4", port: 8088 }] });
    const relayed = peer({ reach: "relay" }, 1);
    const noAddress = peer({ addresses: [] }, 1);
    const stranger = peer({}, 1);
    const vouched = new Set(
      [slow, fast, unmeasured, relayed, noAddress].map((p) => p.id.nodeId).concat(self.nodeId),
    );
    const ids = (max: number) => dialbackCandidates(table, self.nodeId, vouched, max).map((s) => s.record.id);
    expect(ids(10)).toEqual([fast.id.nodeId, slow.id.nodeId, unmeasured.id.nodeId]);
    expect(ids(2)).toEqual([fast.id.nodeId, slow.id.nodeId]);
    expect(ids(10)).not.toContain(stranger.id.nodeId);
  });

  test("reads the vouched ids' rows only, not the table: a node with nobody to ask checks every second", () => {
    for (let i = 0; i < 50; i++) peer({ addresses: [{ host: `10.0.1.${i}`, port: 8088 }] }, 1);
    const friend = peer({ addresses: [{ host: "10.0.2.1", port: 8088 }] }, 3);
    const live = spyOn(table, "live");
    const get = spyOn(table, "get");
    try {
      const ids = dialbackCandidates(table, self.nodeId, [friend.id.nodeId, "not-held"], 2);
      expect(ids.map((s) => s.record.id)).toEqual([friend.id.nodeId]);
      expect(dialbackCandidates(table, self.nodeId, [], 2)).toEqual([]);
      expect(live).not.toHaveBeenCalled();
      expect(get.mock.calls.map(([id]) => id)).toEqual([friend.id.nodeId, "not-held"]);
    } finally {
      live.mockRestore();
      get.mockRestore();
    }
  });
});

/** A fake network: answers by URL prefix; records every URL asked. */
function fakeNet(routes: Record<string, (req: Request) => Response | Promise<Response>>) {
  const calls: string[] = [];
  const fetchFn = (async (input: string | URL | Request, init?: RequestInit) => {
    const req = input instanceof Request ? new Request(input, init) : new Request(String(input), init);
    calls.push(req.url);
    const hit = Object.keys(routes).find((prefix) => req.url.startsWith(prefix));
    if (!hit) throw new Error(`connect ECONNREFUSED ${req.url}`);
    return await (routes[hit] as (r: Request) => Response | Promise<Response>)(req);
  }) as typeof fetch;
  return { calls, fetch: fetchFn };
}

function service(
  o: {
    mode?: NatMode;
    fetch?: typeof fetch;
    selfRecord?: SignedRecord;
    vouched?: () => Iterable<string>;
  } & Pick<ReachDeps, "retryMs" | "intervalMs" | "maxConcurrent"> = {},
) {
  const changes: ReachState[] = [];
  const { selfRecord, mode, vouched, ...rest } = o;
  const record = selfRecord ?? signedRecord(self, { addresses: [{ host: "10.250.1.2", port: 8088 }] });
  const reach = new ReachService({
    identity: self,
    mode: mode ?? "auto",
    table,
    clock,
    logger: memoryLogger(),
    vouched: vouched ?? (() => table.live().map((row) => row.id)),
    selfRecord: async () => record,
    changed: (s) => changes.push(s),
    ...rest,
  });
  return { reach, changes };
}

const answer = (body: unknown, status = 200) => Response.json(body, { status });

describe("ReachService: asking", () => {
  test("members that cannot dial it back make it relayed; the record's state changes once", async () => {
    peer({ addresses: [{ host: "10.250.0.2", port: 8088 }] }, 1);
    const net = fakeNet({
      "http://10.250.0.2:8088/v1/p2p/dialback": () =>
        answer({ reachable: false, address: "10.250.1.2:8088", error: "timed out" }),
    });
    const { reach, changes } = service({ fetch: net.fetch });
    expect(reach.state()).toEqual({ nat: false, reach: "direct" });
    expect(await reach.check()).toBe("relay");
    expect(reach.state()).toEqual({ nat: true, reach: "relay" });
    expect(changes).toEqual([{ nat: true, reach: "relay" }]);
    expect(await reach.check()).toBe("relay");
    expect(changes.length).toBe(1);
    expect(reach.report()).toMatchObject({ mode: "auto", reach: "relay", checkedAt: clock.now() });
  });

  test("one member that dials it back makes it direct", async () => {
    peer({ addresses: [{ host: "10.250.0.2", port: 8088 }] }, 1);
    peer({ addresses: [{ host: "10.250.0.3", port: 8088 }] }, 2);
    const net = fakeNet({
      "http://10.250.0.2:8088/": () => answer({ reachable: false, address: "x", error: "no" }),
      "http://10.250.0.3:8088/": () => answer({ reachable: true, address: "x" }),
    });
    const { reach } = service({ fetch: net.fetch, mode: "auto" });
    expect(await reach.check()).toBe("direct");
    expect(
      reach
        .report()
        .answers.map((a) => a.reachable)
        .sort(),
    ).toEqual([false, true]);
  });

  test("members that do not answer (down, 429) change nothing; nobody to ask changes nothing", async () => {
    const { reach, changes } = service({ fetch: fakeNet({}).fetch });
    expect(await reach.check()).toBe("direct"); // empty table
    peer({ addresses: [{ host: "10.250.0.2", port: 8088 }] }, 1);
    peer({ addresses: [{ host: "10.250.0.3", port: 8088 }] }, 2);
    const net = fakeNet({
      "http://10.250.0.3:8088/": () => answer({ error: { code: "E_RATE_LIMIT", message: "x" } }, 429),
    });
    const second = service({ fetch: net.fetch });
    expect(await second.reach.check()).toBe("direct");
    expect(net.calls.length).toBe(2); // 10.250.0.2 refused the connection, 10.250.0.3 said 429
    expect([...changes, ...second.changes]).toEqual([]);
    expect(second.reach.report().checkedAt).toBeUndefined();
  });

  test("only vouched-for members are asked, and not while the record names no address", async () => {
    peer({ addresses: [{ host: "10.250.0.2", port: 8088 }] }, 1);
    const net = fakeNet({ "http://10.250.0.2:8088/": () => answer({ reachable: false, address: "" }) });
    const strangers = service({ fetch: net.fetch, vouched: () => [] });
    expect(await strangers.reach.check()).toBe("direct");
    const noAddress = service({ fetch: net.fetch, selfRecord: signedRecord(self, { addresses: [] }) });
    expect(await noAddress.reach.check()).toBe("direct");
    expect(net.calls).toEqual([]);
  });

  test('behindNat "true" / "false" force it and never ask', async () => {
    peer({ addresses: [{ host: "10.250.0.2", port: 8088 }] }, 1);
    const net = fakeNet({ "http://10.250.0.2:8088/": () => answer({ reachable: true, address: "" }) });
    const forced = service({ fetch: net.fetch, mode: "true" });
    expect(forced.reach.state()).toEqual({ nat: true, reach: "relay" });
    expect(await forced.reach.check()).toBe("relay");
    const open = service({ fetch: net.fetch, mode: "false" });
    expect(await open.reach.check()).toBe("direct");
    expect(net.calls).toEqual([]);
  });

  test("the relays the agent names are in the state while relayed (at most 4, once each)", () => {
    const { reach, changes } = service({ mode: "true" });
    const relays = Array.from({ length: 6 }, () => generateIdentity().nodeId);
    reach.setRelays([relays[0] as string, relays[0] as string]);
    expect(reach.state()).toEqual({ nat: true, reach: "relay", relays: [relays[0] as string] });
    reach.setRelays([relays[0] as string]); // unchanged: no new record
    reach.setRelays(relays);
    expect(reach.state().relays).toEqual(relays.slice(0, 4));
    expect(changes.length).toBe(2);
    const direct = service({ mode: "false" });
    direct.reach.setRelays(relays); // a direct node publishes none
    expect(direct.reach.state()).toEqual({ nat: false, reach: "direct" });
    expect(direct.changes).toEqual([]);
  });

  test("start() checks every retry until answered, then every interval", async () => {
    peer({ addresses: [{ host: "10.250.0.2", port: 8088 }] }, 1);
    let up = false;
    const net = fakeNet({
      "http://10.250.0.2:8088/": () => {
        if (!up) throw new Error("connection refused");
        return answer({ reachable: false, address: "" });
      },
    });
    const { reach, changes } = service({ fetch: net.fetch, retryMs: 1000, intervalMs: 60_000 });
    // the fake network answers without I/O: a check started by a tick has ended one macrotask later
    const tick = () => Bun.sleep(5);
    reach.start();
    await tick();
    expect(net.calls.length).toBe(1);
    up = true;
    clock.advance(1000);
    await tick();
    expect(net.calls.length).toBe(2);
    expect(changes).toEqual([{ nat: true, reach: "relay" }]);
    clock.advance(30_000); // answered: not again before the interval
    await tick();
    expect(net.calls.length).toBe(2);
    clock.advance(31_000);
    await tick();
    expect(net.calls.length).toBe(3);
    await reach.stop();
    clock.advance(120_000);
    expect(net.calls.length).toBe(3);
  });

  test("stop() aborts a check in progress (a member that never answers does not hold it up)", async () => {
    peer({ addresses: [{ host: "10.250.0.2", port: 8088 }] }, 1);
    const hang = (async (_: unknown, init?: RequestInit) =>
      new Promise<Response>((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal?.reason), { once: true });
      })) as typeof fetch;
    const { reach, changes } = service({ fetch: hang });
    reach.start();
    await Bun.sleep(5);
    const t0 = performance.now();
    await reach.stop();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(changes).toEqual([]);
  });
});

describe("ReachService: dialing back", () => {
  const caller = generateIdentity();
  const callerRecord = (over: Partial<NodeRecord> = {}) =>
    signedRecord(caller, { addresses: [{ host: "10.250.1.2", port: 8088 }], ...over });
  const identityAnswer = (signed: SignedRecord) => () => answer({ nodeId: signed.record.id, record: signed });

  test("dials the first address of the caller's own record and checks that the caller answers there", async () => {
    const rec = callerRecord({
      addresses: [
        { host: "10.250.1.2", port: 8088 },
        { host: "10.250.9.9", port: 1 },
      ],
    });
    const net = fakeNet({ "http://10.250.1.2:8088/v1/identity": identityAnswer(rec) });
    const { reach } = service({ fetch: net.fetch });
    expect(await reach.handleDialback(caller.nodeId, { record: rec })).toEqual({
      reachable: true,
      address: "10.250.1.2:8088",
    });
    expect(net.calls).toEqual(["http://10.250.1.2:8088/v1/identity"]);
  });

  test("not reachable: nothing answers, or another node answers at that address", async () => {
    const rec = callerRecord();
    const down = service({ fetch: fakeNet({}).fetch });
    const r = await down.reach.handleDialback(caller.nodeId, { record: rec });
    expect(r.reachable).toBe(false);
    expect(r.error).toContain("cannot dial 10.250.1.2:8088");
    const other = signedRecord(generateIdentity());
    const impostor = service({ fetch: fakeNet({ "http://10.250.1.2:8088/": identityAnswer(other) }).fetch });
    expect(await impostor.reach.handleDialback(caller.nodeId, { record: rec })).toEqual({
      reachable: false,
      address: "10.250.1.2:8088",
      error: "another node answers at that address",
    });
  });

  test("a record that names no address: not reachable, nothing dialed", async () => {
    const net = fakeNet({});
    const { reach } = service({ fetch: net.fetch });
    const r = await reach.handleDialback(caller.nodeId, { record: callerRecord({ addresses: [] }) });
    expect(r).toEqual({ reachable: false, address: "", error: "the record names no address" });
    expect(net.calls).toEqual([]);
  });

  test("refused, nothing dialed: another node's record, a forged record, no record", async () => {
    const net = fakeNet({});
    const { reach } = service({ fetch: net.fetch });
    const someoneElse = signedRecord(generateIdentity(), { addresses: [{ host: "192.0.2.1", port: 80 }] });
    const forged = signedRecord(caller, { addresses: [{ host: "192.0.2.1", port: 80 }] }, generateIdentity());
    for (const body of [{ record: someoneElse }, { record: forged }, {}, null]) {
      const err = await reach.handleDialback(caller.nodeId, body).catch((e) => e);
      expect(isP2prcError(err, "E_INVALID")).toBe(true);
    }
    expect(net.calls).toEqual([]);
  });

  test("rate-limited: one per caller per 10 s, and a bounded number at once", async () => {
    const rec = callerRecord();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const net = fakeNet({
      "http://": async (req) => {
        await gate;
        return identityAnswer(
          signedRecord(caller, { addresses: [{ host: new URL(req.url).hostname, port: 8088 }] }),
        )();
      },
    });
    const { reach } = service({ fetch: net.fetch, maxConcurrent: 2 });
    const first = reach.handleDialback(caller.nodeId, { record: rec });
    const again = await reach.handleDialback(caller.nodeId, { record: rec }).catch((e) => e);
    expect(isP2prcError(again, "E_RATE_LIMIT")).toBe(true);
    const others = [generateIdentity(), generateIdentity()].map((id) => ({
      id,
      record: signedRecord(id, { addresses: [{ host: "10.250.1.3", port: 8088 }] }),
    }));
    const second = reach.handleDialback(others[0]?.id.nodeId as string, { record: others[0]?.record });
    const third = await reach
      .handleDialback(others[1]?.id.nodeId as string, { record: others[1]?.record })
      .catch((e) => e);
    expect(isP2prcError(third, "E_RATE_LIMIT")).toBe(true); // two in flight already
    release();
    expect((await first).reachable).toBe(true);
    await second;
    expect(net.calls.length).toBe(2);
    clock.advance(10_000);
    expect((await reach.handleDialback(caller.nodeId, { record: rec })).reachable).toBe(true);
  });
});

describe("gossip with a relayed node", () => {
  test("peers never dial it, keep it alive while it contacts them, and drop it 3 suspect timeouts after it stops", async () => {
    const net = new Net();
    const pubs = [net.add("pub-0"), net.add("pub-1")];
    const home = net.add("home", { config: { behindNat: "true" } });
    net.set(home, "down"); // nobody can dial in
    for (const n of [pubs[1] as TestNode, home])
      n.store.peers.addSeed("127.0.0.1", (pubs[0] as TestNode).port, true, net.clock.now());
    const homeId = home.identity.nodeId;
    for (let r = 0; r < 20; r++) {
      await home.gossip.round();
      await net.rounds(pubs);
      net.clock.advance(1000);
    }
    for (const p of pubs) {
      expect(p.table.get(homeId)?.state).toBe("alive");
      expect(p.table.views().find((v) => v.id === homeId)?.reach).toBe("relay");
    }
    expect(net.calls.filter((c) => c.url.startsWith(home.url))).toEqual([]);
    // home stops: no failed dial makes it suspect, but silence drops it: 3 suspect timeouts (15 s) after
    // the last contact a pub had, found by that pub's next look for silent records (every 5 s), and
    // the other pub takes its death notice. A quiet round contacts one peer, so the two pubs' last
    // contacts may differ by rounds.
    const heard = pubs.map((p) => p.table.get(homeId)?.lastSeen as number);
    for (let r = 0; r < 25; r++) {
      await net.rounds(pubs);
      for (const p of pubs) {
        if (net.clock.now() - Math.min(...heard) < 15_000) expect(p.table.get(homeId)?.state).toBe("alive");
        if (net.clock.now() - Math.max(...heard) >= 20_000) expect(p.table.get(homeId)?.state).toBe("dead");
      }
      net.clock.advance(1000);
    }
    for (const p of pubs) expect(p.table.get(homeId)?.state).toBe("dead");
    expect(net.calls.filter((c) => c.url.startsWith(home.url))).toEqual([]);
  });
});
