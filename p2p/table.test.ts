// The IP table on its own: signed records, versions, tombstones, digests, latency and the user view.
import { beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalJson, generateIdentity, type Identity, ManualClock, sha256Hex } from "../core/index.ts";
import { openStore, type Store } from "../store/index.ts";
import { OFFER, recordOf, signedRecord } from "./fixtures.ts";
import { digestHash, PeerTable, verifyDeath, verifyRecord } from "./table.ts";
import type { DeathNotice, NodeRecord, SignedRecord } from "./types.ts";

const signed = signedRecord;

function death(id: string, version: number, reporter: Identity, at = 1_700_000_000_000): DeathNotice {
  const body = { id, version, reporter: reporter.nodeId, at };
  return { ...body, signature: reporter.signJson(body) };
}

/** A signed record that must also pass verifyRecord (as the gossip layer does before merging). */
function verified(s: SignedRecord): SignedRecord {
  const v = verifyRecord(s);
  if (!v) throw new Error("test record does not verify");
  return v;
}

let store: Store;
let clock: ManualClock;
let self: Identity;
let table: PeerTable;

beforeEach(() => {
  store = openStore(":memory:");
  clock = new ManualClock();
  self = generateIdentity();
  table = new PeerTable(store.peers, self.nodeId, clock);
  table.putSelf(signed(self, { name: "self-node", version: 5 }));
});

describe("verifyRecord", () => {
  test("a record signed by its own node verifies and comes back unchanged", () => {
    const a = generateIdentity();
    const s = signed(a, { metadata: "gpu box" });
    expect(verifyRecord(s)).toEqual(s);
  });

  test("a bad signature is rejected", () => {
    const a = generateIdentity();
    const s = signed(a);
    // a well-formed signature, but over other bytes
    const other = a.signJson({ something: "else" });
    expect(verifyRecord({ ...s, signature: other })).toBeUndefined();
    // a flipped character
    const flipped = (s.signature[0] === "A" ? "B" : "A") + s.signature.slice(1);
    expect(verifyRecord({ ...s, signature: flipped })).toBeUndefined();
  });

  test("an id of another key (signed by A, id of B) is rejected", () => {
    const a = generateIdentity();
    const b = generateIdentity();
    const forged = signed(b, { name: "impostor" }, a);
    expect(forged.record.id).toBe(b.nodeId);
    expect(verifyRecord(forged)).toBeUndefined();
  });

  test("any tampered field is rejected", () => {
    const a = generateIdentity();
    const s = signed(a);
    const tampered: Partial<NodeRecord>[] = [
      { name: "other-name" },
      { addresses: [{ host: "10.0.0.1", port: 9000 }] },
      { nat: true },
      { version: 2 },
      { metadata: "x" },
      { offer: { ...OFFER, cpus: 64 } },
      { issuedAt: 1 },
      { reach: "relay" },
    ];
    for (const t of tampered) {
      expect(verifyRecord({ ...s, record: { ...s.record, ...t } })).toBeUndefined();
    }
  });

  test("an extra unknown field is rejected, in the record and beside it", () => {
    const a = generateIdentity();
    const record = { ...recordOf(a), extra: "field" };
    // signed over the extra field too: the signature is fine, the schema is not
    expect(verifyRecord({ record, signature: a.signJson(record) })).toBeUndefined();
    const s = signed(a);
    expect(verifyRecord({ ...s, extra: 1 })).toBeUndefined();
  });

  test("a malformed id or missing signature is rejected", () => {
    const a = generateIdentity();
    const s = signed(a);
    expect(verifyRecord({ record: s.record })).toBeUndefined();
    expect(verifyRecord({ ...s, record: { ...s.record, id: s.record.id.toUpperCase() } })).toBeUndefined();
    expect(verifyRecord(null)).toBeUndefined();
    expect(verifyRecord("text")).toBeUndefined();
  });
});

describe("merge", () => {
  test("added, then a newer version updated, then same and older stale", () => {
    const a = generateIdentity();
    expect(table.merge(verified(signed(a, { version: 10 })))).toBe("added");
    expect(table.record(a.nodeId)?.record.version).toBe(10);
    expect(table.merge(verified(signed(a, { version: 11, metadata: "new" })))).toBe("updated");
    expect(table.record(a.nodeId)?.record.metadata).toBe("new");
    // same version, even with other content: the held record stays
    expect(table.merge(verified(signed(a, { version: 11, metadata: "equivocation" })))).toBe("stale");
    expect(table.merge(verified(signed(a, { version: 3, metadata: "old" })))).toBe("stale");
    expect(table.record(a.nodeId)?.record.metadata).toBe("new");
    expect(table.get(a.nodeId)?.version).toBe(11);
  });

  test("a record of this node is never stored as a peer", () => {
    expect(table.merge(verified(signed(self, { version: 4 })))).toBe("self");
    expect(table.merge(verified(signed(self, { version: 9, name: "elsewhere" })))).toBe("self-newer");
    expect(table.record(self.nodeId)?.record.name).toBe("self-node");
    expect(table.get(self.nodeId)?.version).toBe(5);
  });
});

describe("death notices", () => {
  let reporter: Identity;
  let victim: Identity;

  beforeEach(() => {
    reporter = generateIdentity();
    victim = generateIdentity();
    table.merge(verified(signed(reporter, { version: 1 })));
    table.merge(verified(signed(victim, { version: 7, name: "victim-node" })));
  });

  test("verifyDeath: the reporter's signature verifies; a forged or tampered one does not", () => {
    const n = death(victim.nodeId, 7, reporter);
    expect(verifyDeath(n)).toEqual(n);
    expect(verifyDeath({ ...n, version: 8 })).toBeUndefined();
    expect(verifyDeath({ ...n, id: self.nodeId })).toBeUndefined();
    // signed by someone else in the reporter's name
    const body = { id: victim.nodeId, version: 7, reporter: reporter.nodeId, at: 1 };
    expect(verifyDeath({ ...body, signature: victim.signJson(body) })).toBeUndefined();
    expect(verifyDeath({ ...n, extra: true })).toBeUndefined();
  });

  test("a notice from a known reporter tombstones the record", () => {
    expect(table.applyDeath(death(victim.nodeId, 7, reporter))).toBe("applied");
    expect(table.get(victim.nodeId)?.state).toBe("dead");
    expect(table.record(victim.nodeId)).toBeUndefined();
    expect(table.death(victim.nodeId)?.reporter).toBe(reporter.nodeId);
    // the notice handed on is the signed one, as received; the tombstone remembers the name apart
    expect(verifyDeath(table.death(victim.nodeId))).toEqual(death(victim.nodeId, 7, reporter));
    expect(table.dead()).toEqual([{ id: victim.nodeId, name: "victim-node" }]);
    expect(table.views().map((v) => v.id)).not.toContain(victim.nodeId);
    expect(table.live().map((r) => r.id)).not.toContain(victim.nodeId);
  });

  test("after the tombstone an old copy is refused, a newer version revives", () => {
    table.applyDeath(death(victim.nodeId, 7, reporter));
    expect(table.merge(verified(signed(victim, { version: 7 })))).toBe("tombstoned");
    expect(table.merge(verified(signed(victim, { version: 2 })))).toBe("tombstoned");
    expect(table.get(victim.nodeId)?.state).toBe("dead");
    expect(table.merge(verified(signed(victim, { version: 8, name: "back" })))).toBe("added");
    expect(table.get(victim.nodeId)?.state).toBe("alive");
    expect(table.record(victim.nodeId)?.record.name).toBe("back");
    expect(table.views().map((v) => v.id)).toContain(victim.nodeId);
  });

  test("a notice older than the held record is ignored", () => {
    table.merge(verified(signed(victim, { version: 9 })));
    expect(table.applyDeath(death(victim.nodeId, 7, reporter))).toBe("ignored");
    expect(table.get(victim.nodeId)?.state).toBe("alive");
  });

  test("a notice about this node asks for a refutation and changes nothing", () => {
    expect(table.applyDeath(death(self.nodeId, 5, reporter))).toBe("refute");
    expect(table.get(self.nodeId)?.state).toBe("alive");
    expect(table.record(self.nodeId)?.record.name).toBe("self-node");
  });

  test("a notice from an unknown reporter is ignored", () => {
    const stranger = generateIdentity();
    expect(table.applyDeath(death(victim.nodeId, 7, stranger))).toBe("ignored");
    expect(table.get(victim.nodeId)?.state).toBe("alive");
  });

  test("a notice from a reporter that is itself dead is ignored", () => {
    const other = generateIdentity();
    table.merge(verified(signed(other, { version: 1 })));
    table.applyDeath(death(reporter.nodeId, 1, other));
    expect(table.applyDeath(death(victim.nodeId, 7, reporter))).toBe("ignored");
    expect(table.get(victim.nodeId)?.state).toBe("alive");
  });

  test("purge drops only tombstones older than the age given", () => {
    table.applyDeath(death(victim.nodeId, 7, reporter));
    clock.advance(1000);
    expect(table.purge(5000)).toBe(0);
    expect(table.get(victim.nodeId)?.state).toBe("dead");
    clock.advance(10_000);
    expect(table.purge(5000)).toBe(1);
    expect(table.get(victim.nodeId)).toBeUndefined();
    expect(table.get(reporter.nodeId)?.state).toBe("alive");
  });
});

describe("digest", () => {
  test("the hash is SHA-256 over the canonical JSON of [id, version, dead] (what every node computes)", () => {
    const a = generateIdentity();
    table.merge(verified(signed(a, { version: 3 })));
    const digest = table.digest();
    expect(digest).toContainEqual([a.nodeId, 3, false]);
    expect(digestHash(digest)).toBe(sha256Hex(canonicalJson(digest)));
    expect(digestHash([["x", 1, true]])).toBe(sha256Hex(canonicalJson([["x", 1, true]])));
  });

  test("equal tables give equal digests and hashes; any difference changes them", () => {
    const a = generateIdentity();
    const b = generateIdentity();
    const t2 = new PeerTable(openStore(":memory:").peers, self.nodeId, new ManualClock(5));
    t2.putSelf(signed(self, { name: "self-node", version: 5 }));
    // merged in another order, at another time: same digest
    table.merge(verified(signed(a, { version: 3 })));
    table.merge(verified(signed(b, { version: 4 })));
    t2.merge(verified(signed(b, { version: 4 })));
    t2.merge(verified(signed(a, { version: 3 })));
    table.markContact(a.nodeId, 12); // latency is local, not part of the digest
    expect(t2.digest()).toEqual(table.digest());
    expect(digestHash(t2.digest())).toBe(digestHash(table.digest()));
    expect(digestHash(table.digest())).toMatch(/^[0-9a-f]{64}$/);
    const ids = table.digest().map((d) => d[0]);
    expect(ids).toEqual([...ids].sort());

    // a newer version
    t2.merge(verified(signed(a, { version: 4 })));
    expect(digestHash(t2.digest())).not.toBe(digestHash(table.digest()));
    table.merge(verified(signed(a, { version: 4 })));
    expect(digestHash(t2.digest())).toBe(digestHash(table.digest()));

    // a death at the same version
    table.applyDeath(death(b.nodeId, 4, a));
    expect(table.digest().find((d) => d[0] === b.nodeId)).toEqual([b.nodeId, 4, true]);
    expect(digestHash(t2.digest())).not.toBe(digestHash(table.digest()));

    // an extra node
    const t3 = new PeerTable(openStore(":memory:").peers, self.nodeId, new ManualClock());
    t3.putSelf(signed(self, { name: "self-node", version: 5 }));
    const t4 = new PeerTable(openStore(":memory:").peers, self.nodeId, new ManualClock());
    t4.putSelf(signed(self, { name: "self-node", version: 5 }));
    t4.merge(verified(signed(a, { version: 1 })));
    expect(digestHash(t3.digest())).not.toBe(digestHash(t4.digest()));
  });
});

describe("latency and the view", () => {
  test("a peer's first latency is in SQLite at once (`--ls` reads it there); later ones wait for the flush", () => {
    const dir = mkdtempSync(join(tmpdir(), "p2prc-table-"));
    try {
      const file = join(dir, "state.db");
      const mine = openStore(file);
      const t = new PeerTable(mine.peers, self.nodeId, clock);
      const a = generateIdentity();
      t.merge(verified(signed(a)));
      t.markContact(a.nodeId); // alive, no measurement yet
      t.markContact(a.nodeId, 10);
      t.markContact(a.nodeId, 30);
      const other = openStore(file); // another process's view, as the CLI's
      expect(other.peers.get(a.nodeId)?.latencyMs).toBe(10);
      other.close();
      mine.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("markContact keeps the median of the last samples", () => {
    const a = generateIdentity();
    table.merge(verified(signed(a)));
    expect(table.get(a.nodeId)?.latencyMs).toBeUndefined();
    table.markContact(a.nodeId, 10);
    expect(table.get(a.nodeId)?.latencyMs).toBe(10);
    table.markContact(a.nodeId, 30);
    expect(table.get(a.nodeId)?.latencyMs).toBe(20); // even count: mean of the middle two
    table.markContact(a.nodeId, 1000); // one outlier does not move the median far
    expect(table.get(a.nodeId)?.latencyMs).toBe(30);
    for (const ms of [40, 50, 60, 70]) table.markContact(a.nodeId, ms);
    // only the last five samples count: 1000, 40, 50, 60, 70 → 60
    expect(table.get(a.nodeId)?.rttSamples).toEqual([1000, 40, 50, 60, 70]);
    expect(table.get(a.nodeId)?.latencyMs).toBe(60);
    // a contact without a measurement (an incoming exchange) keeps the latency
    table.markContact(a.nodeId);
    expect(table.get(a.nodeId)?.latencyMs).toBe(60);
    expect(table.get(a.nodeId)?.rttSamples).toHaveLength(5);
  });

  test("markFailure makes a peer suspect; a contact makes it alive again", () => {
    const a = generateIdentity();
    table.merge(verified(signed(a)));
    clock.advance(100);
    expect(table.markFailure(a.nodeId)?.state).toBe("suspect");
    expect(table.markFailure(a.nodeId)?.failures).toBe(2);
    expect(table.views().find((v) => v.id === a.nodeId)?.state).toBe("suspect");
    table.markContact(a.nodeId, 5);
    expect(table.get(a.nodeId)).toMatchObject({ state: "alive", failures: 0, lastSeen: clock.now() });
  });

  test("views: this node first, then by latency, unmeasured last", () => {
    const ids = [generateIdentity(), generateIdentity(), generateIdentity(), generateIdentity()];
    ids.forEach((id, i) => {
      table.merge(verified(signed(id, { name: `n${i}`, addresses: [{ host: "10.0.0.1", port: 9000 + i }] })));
    });
    table.markContact(ids[0]?.nodeId as string, 50);
    table.markContact(ids[1]?.nodeId as string, 5);
    table.markContact(ids[2]?.nodeId as string, 20);
    const views = table.views();
    expect(views.map((v) => v.name)).toEqual(["self-node", "n1", "n2", "n0", "n3"]);
    expect(views[0]).toMatchObject({ self: true, latencyMs: 0, id: self.nodeId });
    expect(views.filter((v) => v.self)).toHaveLength(1);
    expect(views[4]?.latencyMs).toBeUndefined();
    expect(views[1]).toMatchObject({
      id: ids[1]?.nodeId,
      address: "10.0.0.1",
      port: 9001,
      nat: false,
      latencyMs: 5,
      metadata: "",
      state: "alive",
    });
    expect(new Date(views[1]?.lastSeen as string).getTime()).toBe(clock.now());
  });

  test("views: this node stays first even when a peer measured 0 ms (sub-0.05 ms rtt)", () => {
    // Ids are random, so make sure at least one peer sorts before this node by id.
    let low = generateIdentity();
    while (low.nodeId > self.nodeId) low = generateIdentity();
    table.merge(verified(signed(low, { name: "fast-peer" })));
    table.markContact(low.nodeId, 0.01); // rounded to 0.0 ms
    expect(table.get(low.nodeId)?.latencyMs).toBe(0);
    const views = table.views();
    expect(views[0]?.self).toBe(true);
    expect(views[0]?.name).toBe("self-node");
  });

  test("a record with no address shows address and port as undefined", () => {
    const a = generateIdentity();
    table.merge(verified(signed(a, { addresses: [] })));
    expect(table.views().find((v) => v.id === a.nodeId)).toMatchObject({
      address: undefined,
      port: undefined,
    });
  });
});

describe("limit", () => {
  test("drops tombstones first, then nodes never reached (least recently heard of first), then reached ones; never this node or the vouched", () => {
    const [reached, vouched, heardOld, heardNew, dead] = Array.from({ length: 5 }, () =>
      generateIdentity(),
    ) as [Identity, Identity, Identity, Identity, Identity];
    for (const who of [reached, vouched, heardOld, dead]) table.merge(verified(signed(who)));
    table.markContact(reached.nodeId, 3); // reached by this node: a round trip measured
    clock.advance(1000);
    table.merge(verified(signed(heardNew)));
    table.applyDeath(death(dead.nodeId, 1, self, clock.now()));
    const isVouched = (id: string) => id === vouched.nodeId;
    expect(table.size()).toBe(6);
    expect(table.limit(6, isVouched)).toEqual([]);
    expect(table.limit(5, isVouched)).toEqual([dead.nodeId]);
    expect(table.limit(3, isVouched)).toEqual([heardOld.nodeId, heardNew.nodeId]);
    expect(table.limit(1, isVouched)).toEqual([reached.nodeId]);
    // what is left: this node and the vouched one, whatever the bound
    expect(table.limit(1, isVouched)).toEqual([]);
    expect(table.size()).toBe(2);
    expect(table.get(self.nodeId)).toBeDefined();
    expect(table.get(vouched.nodeId)).toBeDefined();
  });
});
