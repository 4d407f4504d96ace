// What gossip sends a peer and takes of an answer, on plain data: the exchange request and answer, the sync
// plan after differing digests (what is pushed, what is wanted), and which pushed records and notices are
// worth verifying.
import { describe, expect, test } from "bun:test";
import { generateIdentity, ManualClock } from "../core/index.ts";
import { signedRecord } from "./fixtures.ts";
import type { Random } from "./gossip-core.ts";
import {
  answeredBy,
  deathsToVerify,
  exchangeAnswer,
  exchangeRequest,
  type Knowledge,
  knownPeer,
  planSync,
  rankRecords,
  recordsToVerify,
} from "./gossip-sync.ts";
import { Introductions } from "./introductions.ts";
import { digestHash } from "./table.ts";
import type { Digest } from "./types.ts";

const fixed: Random = () => 0.5;

function knowledge(over: Partial<Knowledge> = {}): Knowledge {
  return { self: "me", vouched: () => false, wants: () => true, random: fixed, ...over };
}

describe("the exchange request", () => {
  const me = generateIdentity();
  const self = signedRecord(me, { version: 5 });
  const ask = { self, hash: "h", known: "peer", probe: false, have: 3, held: 5, clusters: [] };

  test("a peer known to hold this node's current record gets no record; one holding an older one does", () => {
    expect(exchangeRequest(ask)).toEqual({ hash: "h", have: 3 });
    expect(exchangeRequest({ ...ask, held: 4 })).toEqual({ hash: "h", have: 3, from: self });
  });

  test("nothing known of what the peer holds (no contact yet): the record is left out, the digest hash tells", () => {
    expect(exchangeRequest({ ...ask, held: undefined, have: undefined })).toEqual({ hash: "h" });
  });

  test("a seed, an unknown node or a probe gets the record; cluster versions go along when held", () => {
    expect(knownPeer({ url: "u", id: "x", seed: { host: "h", port: 1 } })).toBeUndefined();
    expect(knownPeer({ url: "u" })).toBeUndefined();
    expect(knownPeer({ url: "u", id: "x", probe: true })).toBe("x");
    expect(exchangeRequest({ ...ask, known: undefined }).from).toBe(self);
    expect(exchangeRequest({ ...ask, probe: true }).from).toBe(self);
    expect(exchangeRequest({ ...ask, clusters: [["host", "lab", 2]] }).clusters).toEqual([
      ["host", "lab", 2],
    ]);
  });

  test("the answer: the verified record names the peer; a known peer may answer without it when this node holds it", () => {
    const peer = generateIdentity();
    const rec = signedRecord(peer);
    expect(answeredBy("u", { from: rec, observed: undefined, same: true }, undefined, undefined)).toEqual({
      id: peer.nodeId,
      record: rec,
    });
    expect(answeredBy("u", { observed: undefined, same: true }, peer.nodeId, 4)).toEqual({ id: peer.nodeId });
    expect(() => answeredBy("u", { observed: undefined, same: true }, peer.nodeId, undefined)).toThrow(
      "u: answered without its record",
    );
    expect(() => answeredBy("u", { observed: undefined, same: true }, undefined, undefined)).toThrow(
      "without its record",
    );
    const forged = signedRecord(peer, {}, generateIdentity());
    expect(() =>
      answeredBy("u", { from: forged, observed: undefined, same: true }, undefined, undefined),
    ).toThrow("does not verify");
    expect(() => answeredBy("u", { from: rec, observed: undefined, same: true }, "someone-else", 1)).toThrow(
      "answered as another node",
    );
  });
});

describe("answering an exchange", () => {
  const self = signedRecord(generateIdentity(), { version: 9 });
  const digest: Digest = [["a", 1, false]];
  const q = {
    digest,
    self,
    hash: digestHash(digest),
    have: 9,
    observed: "10.0.0.1",
    got: 3,
    newer: [],
    older: [],
  };

  test("equal hashes: no digest; the caller holds the current record: no record", () => {
    expect(exchangeAnswer(q)).toEqual({ observed: "10.0.0.1", same: true, got: 3 });
  });

  test("different hashes: the digest; an older copy at the caller: the record; an unknown caller: no got", () => {
    expect(exchangeAnswer({ ...q, hash: "other", have: 8, got: undefined })).toEqual({
      observed: "10.0.0.1",
      same: false,
      digest,
      from: self,
    });
  });

  test("cluster documents held newer, and versions held older, go back", () => {
    const newer = [{ cluster: {}, signature: "s" }] as never;
    const res = exchangeAnswer({ ...q, newer, older: [["h", "lab", 1]] });
    expect(res.clusters).toBe(newer);
    expect(res.olderClusters).toEqual([["h", "lab", 1]]);
  });
});

describe("the sync plan", () => {
  test("pushes newer records and missing deaths, wants what the peer has newer or dead", () => {
    const mine: Digest = [
      ["a", 2, false], // newer here: pushed
      ["b", 1, false], // older here: wanted
      ["c", 1, false], // equal: nothing
      ["d", 1, true], // dead here, alive there at the same version: the notice is pushed
      ["e", 1, false], // dead there at the same version: wanted (the notice)
      ["f", 1, true], // dead here, not there at all: the notice is pushed
    ];
    const theirs: Digest = [
      ["a", 1, false],
      ["b", 2, false],
      ["c", 1, false],
      ["d", 1, false],
      ["e", 1, true],
      ["g", 1, true], // a death of a node not held here: not wanted
    ];
    expect(planSync(mine, theirs, 100, knowledge())).toEqual({
      records: ["a"],
      deaths: ["d", "f"],
      want: ["b", "e"],
    });
  });

  test("a node the peer does not hold is pushed only when it is this node or vouched for", () => {
    const mine: Digest = [
      ["me", 1, false],
      ["friend", 1, false],
      ["stranger", 1, false],
    ];
    const k = knowledge({ vouched: (id) => id === "friend" });
    expect(planSync(mine, [], 100, k).records).toEqual(["me", "friend"]);
  });

  test("a node new to this node is wanted only when the introductions would take it", () => {
    const theirs: Digest = [
      ["new", 3, false],
      ["rejected", 3, false],
    ];
    const k = knowledge({ wants: (id) => id !== "rejected" });
    expect(planSync([], theirs, 100, k).want).toEqual(["new"]);
  });

  test("at most cap of each: held and vouched ones first, the rest at random", () => {
    const mine: Digest = Array.from(
      { length: 10 },
      (_, i) => [`h${i}`, 1, false] as [string, number, boolean],
    );
    const theirs: Digest = [
      ...Array.from({ length: 10 }, (_, i) => [`h${i}`, 2, false] as [string, number, boolean]),
      ...Array.from({ length: 10 }, (_, i) => [`n${i}`, 1, false] as [string, number, boolean]),
      ["vip", 1, false],
    ];
    const k = knowledge({ vouched: (id) => id === "vip" });
    const want = planSync(mine, theirs, 12, k).want;
    expect(want).toHaveLength(12);
    // the 10 held ones and the vouched one come first, one new node fills the rest
    expect(want.slice(0, 11).sort()).toEqual([...mine.map(([id]) => id), "vip"].sort());
    expect(want[11]?.startsWith("n")).toBe(true);
  });
});

describe("what is verified of what a peer pushed", () => {
  const held = generateIdentity();
  const friend = generateIdentity();
  const strangers = Array.from({ length: 4 }, () => generateIdentity());

  test("newer versions of held nodes first, then vouched ones, then introductions within the room; junk is dropped", () => {
    const records: unknown[] = [
      ...strangers.map((s) => signedRecord(s, { version: 2 })),
      signedRecord(friend, { version: 2 }),
      signedRecord(held, { version: 2 }),
      signedRecord(held, { version: 1 }), // not newer than the version held
      null,
      { record: { id: 7 } },
      "junk",
    ];
    const heldVersion = (id: string) => (id === held.nodeId ? 1 : undefined);
    const k = knowledge({ vouched: (id) => id === friend.nodeId });
    const ranked = rankRecords(records, heldVersion, k);
    expect(ranked.map((r) => r.rank)).toEqual([0, 1, 2, 2, 2, 2]);
    expect(ranked[0]?.raw).toBe(records[5]);
    expect(ranked[1]?.raw).toBe(records[4]);
    // the introducer may introduce 2 more: 4 of 6 are verified; a cap of 3 leaves one introduction
    expect(recordsToVerify(ranked, 2, 100)).toHaveLength(4);
    expect(recordsToVerify(ranked, 0, 100)).toHaveLength(2);
    expect(recordsToVerify(ranked, 2, 3)).toHaveLength(3);
  });

  test("introductions already waiting at that version or set aside are not ranked at all", () => {
    const clock = new ManualClock();
    const intro = new Introductions({ clock, max: 10, perPeer: 10, rejectMs: 60_000 });
    const waiting = signedRecord(strangers[0] as never, { version: 2 });
    intro.offer(waiting, "peer");
    const k = knowledge({ wants: (id, v) => intro.wants(id, v) });
    expect(rankRecords([waiting], () => undefined, k)).toEqual([]);
    const newer = signedRecord(strangers[0] as never, { version: 3 });
    expect(rankRecords([newer], () => undefined, k)).toHaveLength(1);
  });

  test("death notices: one about this node from any reporter, first; others only about a node held, from a reporter held; at most cap", () => {
    const live = new Set(["a", "b", "r"]);
    const held = (id: string) => live.has(id);
    const deaths = [
      { id: "a", reporter: "r" },
      { id: "me", reporter: "r" },
      { id: "x", reporter: "r" }, // not held
      { id: "b", reporter: "x" }, // reporter not held
      { id: 5, reporter: "r" },
      null,
      { id: "b", reporter: "r" },
      { id: "me", reporter: "x" }, // about this node, from a reporter not held
    ];
    expect(deathsToVerify(deaths, "me", held, 100)).toEqual([deaths[1], deaths[7], deaths[0], deaths[6]]);
    expect(deathsToVerify(deaths, "me", held, 3)).toEqual([deaths[1], deaths[7], deaths[0]]);
    // a node that holds none of its reporters (it declared them all dead) still refutes
    expect(deathsToVerify([{ id: "me", reporter: "x" }], "me", () => false, 100)).toEqual([
      { id: "me", reporter: "x" },
    ]);
  });
});
