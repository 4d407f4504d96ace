// ClusterBook against a real SQLite store: hosting, joining, accepting gossiped versions, who counts as a
// member or admin, digests between two books, and picking up documents another process wrote.
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateIdentity, type Identity, isP2prcError, ManualClock, memoryLogger } from "../core/index.ts";
import { openStore, type Store } from "../store/index.ts";
import { ClusterBook, verifyCluster } from "./cluster.ts";
import type { ClusterDocument, ClusterMember, SignedCluster } from "./types.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-cluster-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function book(
  store: Store,
  self: Identity,
  clock: ManualClock,
  over: { trusted?: string[]; openNetwork?: boolean } = {},
): ClusterBook {
  return new ClusterBook({
    documents: store.clusters,
    selfId: self.nodeId,
    clock,
    logger: memoryLogger(),
    trusted: over.trusted ?? [],
    openNetwork: over.openNetwork ?? false,
  });
}

const member = (who: Identity, role: ClusterMember["role"] = "member", label = "m"): ClusterMember => ({
  id: who.nodeId,
  label,
  role,
});

/** A cluster document hosted by `host`, signed by `signer` (the host unless forging). */
function doc(
  host: Identity,
  over: Partial<ClusterDocument> = {},
  signer: Identity = host,
): { cluster: ClusterDocument; signature: string } {
  const cluster: ClusterDocument = {
    name: "lab",
    host: host.nodeId,
    members: [member(host, "admin", "host")],
    bootstrap: [],
    version: 1,
    issuedAt: 1_700_000_000_000,
    ...over,
  };
  return { cluster, signature: signer.signJson(cluster) };
}

/** Runs `fn` and returns the error it throws (fails the test when it does not throw). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

let clock: ManualClock;
let hostId: Identity;
let memberId: Identity;
let other: Identity;
let hostStore: Store;
let memberStore: Store;
let hostBook: ClusterBook;
let memberBook: ClusterBook;

beforeEach(() => {
  clock = new ManualClock();
  hostId = generateIdentity();
  memberId = generateIdentity();
  other = generateIdentity();
  hostStore = openStore(":memory:");
  memberStore = openStore(":memory:");
  hostBook = book(hostStore, hostId, clock);
  memberBook = book(memberStore, memberId, clock);
});

describe("host()", () => {
  test("the host is a member with role admin; the document verifies and is stored", () => {
    const s = hostBook.host(hostId, "lab", [member(memberId)], ["127.0.0.1:9000"]);
    expect(s.cluster.host).toBe(hostId.nodeId);
    expect(s.cluster.name).toBe("lab");
    const self = s.cluster.members.find((m) => m.id === hostId.nodeId);
    expect(self?.role).toBe("admin");
    expect(s.cluster.members.find((m) => m.id === memberId.nodeId)?.role).toBe("member");
    expect(s.cluster.bootstrap).toEqual(["127.0.0.1:9000"]);
    expect(verifyCluster(s)).toEqual(s);

    const row = hostStore.clusters.get(hostId.nodeId, "lab");
    expect(row?.version).toBe(s.cluster.version);
    expect(verifyCluster(JSON.parse(row!.document))).toEqual(s);
    expect(hostBook.get(hostId.nodeId, "lab")).toEqual(s);
    expect(hostBook.isMember(memberId.nodeId)).toBe(true);
  });

  test("hosting the same name again gives a higher version and keeps the bootstrap when none is given", () => {
    const first = hostBook.host(hostId, "lab", [member(memberId)], ["10.0.0.1:9000"]);
    const second = hostBook.host(hostId, "lab", [member(other)], []);
    expect(second.cluster.version).toBeGreaterThan(first.cluster.version);
    expect(second.cluster.bootstrap).toEqual(["10.0.0.1:9000"]);
    expect(second.cluster.members.map((m) => m.id).sort()).toEqual([hostId.nodeId, other.nodeId].sort());
    expect(hostStore.clusters.get(hostId.nodeId, "lab")?.version).toBe(second.cluster.version);
    expect(hostBook.isMember(memberId.nodeId)).toBe(false);
    expect(hostBook.isMember(other.nodeId)).toBe(true);
  });

  test("listing the host among the members does not demote it; a malformed id is refused", () => {
    const s = hostBook.host(hostId, "lab", [member(hostId, "member")], []);
    expect(s.cluster.members).toEqual([{ id: hostId.nodeId, label: "host", role: "admin" }]);
    const err = thrown(() => hostBook.host(hostId, "lab2", [{ id: "nope", label: "x", role: "member" }], []));
    expect(isP2prcError(err, "E_INVALID")).toBe(true);
    expect(hostBook.get(hostId.nodeId, "lab2")).toBeUndefined();
  });
});

describe("verifyCluster", () => {
  test("accepts a document signed by its host", () => {
    const s = doc(hostId, { members: [member(hostId, "admin"), member(memberId)] });
    expect(verifyCluster(s)).toEqual(s);
  });

  test("rejects a tampered member list", () => {
    const s = doc(hostId, { members: [member(hostId, "admin"), member(memberId)] });
    const added = { ...s, cluster: { ...s.cluster, members: [...s.cluster.members, member(other)] } };
    expect(verifyCluster(added)).toBeUndefined();
    const promoted = {
      ...s,
      cluster: { ...s.cluster, members: [member(hostId, "admin"), member(memberId, "admin")] },
    };
    expect(verifyCluster(promoted)).toBeUndefined();
  });

  test("rejects a document signed by someone other than its host", () => {
    const forged = doc(hostId, { members: [member(hostId, "admin"), member(other)] }, other);
    expect(verifyCluster(forged)).toBeUndefined();
  });

  test("rejects duplicate member ids even when validly signed", () => {
    const dup = doc(hostId, {
      members: [member(hostId, "admin"), member(memberId), member(memberId, "admin")],
    });
    expect(verifyCluster(dup)).toBeUndefined();
  });

  test("rejects unknown extra fields, in the document or beside it", () => {
    const cluster = { ...doc(hostId).cluster, extra: true };
    expect(verifyCluster({ cluster, signature: hostId.signJson(cluster) })).toBeUndefined();
    const s = doc(hostId);
    expect(verifyCluster({ ...s, note: "hi" })).toBeUndefined();
    const m = { ...member(memberId), extra: 1 };
    const withMember = { ...s.cluster, members: [member(hostId, "admin"), m] };
    expect(verifyCluster({ cluster: withMember, signature: hostId.signJson(withMember) })).toBeUndefined();
  });

  test("rejects a bad name, even when validly signed", () => {
    for (const name of ["", "has space", "a/b", "x".repeat(65)]) {
      expect(verifyCluster(doc(hostId, { name }))).toBeUndefined();
    }
    expect(verifyCluster(doc(hostId, { name: "ok.name_1-x" }))).toBeDefined();
  });

  test("rejects non-objects and a version below 1", () => {
    expect(verifyCluster(undefined)).toBeUndefined();
    expect(verifyCluster("lab")).toBeUndefined();
    expect(verifyCluster(doc(hostId, { version: 0 }))).toBeUndefined();
  });
});

describe("accept()", () => {
  let v1: SignedCluster;
  beforeEach(() => {
    v1 = hostBook.host(hostId, "lab", [member(memberId), member(other)], []);
    memberBook.join(v1);
  });

  test('"invalid" for a forgery; nothing changes', () => {
    const forged = doc(
      hostId,
      { version: v1.cluster.version + 10, members: [member(hostId, "admin")] },
      other,
    );
    expect(memberBook.accept(forged)).toBe("invalid");
    const tampered = { ...v1, cluster: { ...v1.cluster, version: v1.cluster.version + 1 } };
    expect(memberBook.accept(tampered)).toBe("invalid");
    expect(memberBook.get(hostId.nodeId, "lab")).toEqual(v1);
    expect(memberBook.isMember(other.nodeId)).toBe(true);
  });

  test('"unknown" for a validly signed cluster never joined: an invented cluster lets no one in', () => {
    const intruder = generateIdentity();
    const accomplice = generateIdentity();
    // even one that names this node as a member: joining takes an explicit join()
    const invented = doc(intruder, {
      name: "lab",
      members: [member(intruder, "admin"), member(accomplice, "admin"), member(memberId)],
    });
    expect(verifyCluster(invented)).toBeDefined();
    expect(memberBook.accept(invented)).toBe("unknown");
    expect(memberBook.isMember(intruder.nodeId)).toBe(false);
    expect(memberBook.isMember(accomplice.nodeId)).toBe(false);
    expect(memberBook.isAdmin(intruder.nodeId)).toBe(false);
    expect(memberBook.get(intruder.nodeId, "lab")).toBeUndefined();
    expect(memberStore.clusters.get(intruder.nodeId, "lab")).toBeUndefined();

    // the real host's signature on another cluster name is not enough either
    const otherName = doc(hostId, { name: "ops", members: [member(hostId, "admin"), member(intruder)] });
    expect(memberBook.accept(otherName)).toBe("unknown");
    expect(memberBook.isMember(intruder.nodeId)).toBe(false);
  });

  test('"stale" for an equal or older version', () => {
    expect(memberBook.accept(v1)).toBe("stale");
    const v2 = hostBook.addMember(hostId, "lab", member(generateIdentity()));
    expect(memberBook.accept(v2)).toBe("newer");
    expect(memberBook.accept(v1)).toBe("stale");
    expect(memberBook.accept(v2)).toBe("stale");
    expect(memberBook.get(hostId.nodeId, "lab")).toEqual(v2);
  });

  test('"newer" for a newer host-signed version; membership follows it', () => {
    const added = generateIdentity();
    const changes: SignedCluster[] = [];
    memberBook.onChange((c) => changes.push(c));
    expect(memberBook.isMember(other.nodeId)).toBe(true);
    expect(memberBook.isMember(added.nodeId)).toBe(false);

    hostBook.removeMember(hostId, "lab", other.nodeId);
    const v3 = hostBook.addMember(hostId, "lab", member(added));
    expect(memberBook.accept(v3)).toBe("newer");

    expect(memberBook.isMember(other.nodeId)).toBe(false);
    expect(memberBook.isMember(added.nodeId)).toBe(true);
    expect(memberBook.isMember(hostId.nodeId)).toBe(true);
    expect(memberStore.clusters.get(hostId.nodeId, "lab")?.version).toBe(v3.cluster.version);
    expect(changes).toEqual([v3]);
  });
});

describe("join()", () => {
  test("refuses a document that does not list this node (E_FORBIDDEN)", () => {
    const s = hostBook.host(hostId, "lab", [member(other)], []);
    const err = thrown(() => memberBook.join(s));
    expect(isP2prcError(err, "E_FORBIDDEN")).toBe(true);
    expect(memberBook.list()).toEqual([]);
    expect(memberStore.clusters.list()).toEqual([]);
    expect(memberBook.isMember(other.nodeId)).toBe(false);
  });

  test("refuses a forgery (E_INVALID)", () => {
    const forged = doc(hostId, { members: [member(hostId, "admin"), member(memberId)] }, other);
    expect(
      isP2prcError(
        thrown(() => memberBook.join(forged)),
        "E_INVALID",
      ),
    ).toBe(true);
    expect(memberBook.list()).toEqual([]);
  });

  test("accepts one that lists this node: its members count from then on", () => {
    const s = hostBook.host(hostId, "lab", [member(memberId), member(other)], []);
    expect(memberBook.isMember(other.nodeId)).toBe(false);
    expect(memberBook.join(s)).toEqual(s);
    expect(memberBook.isMember(other.nodeId)).toBe(true);
    expect(memberBook.isMember(hostId.nodeId)).toBe(true);
    expect(memberStore.clusters.get(hostId.nodeId, "lab")?.version).toBe(s.cluster.version);
  });

  test("an older document does not replace the one held", () => {
    const v1 = hostBook.host(hostId, "lab", [member(memberId), member(other)], []);
    const v2 = hostBook.removeMember(hostId, "lab", other.nodeId);
    expect(memberBook.join(v2)).toEqual(v2);
    expect(memberBook.join(v1)).toEqual(v2);
    expect(memberBook.get(hostId.nodeId, "lab")).toEqual(v2);
    expect(memberStore.clusters.get(hostId.nodeId, "lab")?.version).toBe(v2.cluster.version);
    expect(memberBook.isMember(other.nodeId)).toBe(false);
  });
});

describe("isMember / isAdmin", () => {
  test("self always; trusted ids; everyone on an open network", () => {
    const stranger = generateIdentity().nodeId;
    const trustedId = generateIdentity().nodeId;
    const b = book(openStore(":memory:"), memberId, clock, { trusted: [trustedId] });
    expect(b.isMember(memberId.nodeId)).toBe(true);
    expect(b.isMember(trustedId)).toBe(true);
    expect(b.isMember(stranger)).toBe(false);
    const open = book(openStore(":memory:"), memberId, clock, { openNetwork: true });
    expect(open.isMember(stranger)).toBe(true);
    // being allowed to use the node is not being its admin
    expect(b.isAdmin(trustedId)).toBe(false);
    expect(open.isAdmin(stranger)).toBe(false);
  });

  test("a node removed from a cluster stops trusting its members and host", () => {
    const v1 = hostBook.host(hostId, "lab", [member(memberId), member(other, "admin")], []);
    memberBook.join(v1);
    expect(memberBook.isMember(other.nodeId)).toBe(true);
    expect(memberBook.isAdmin(hostId.nodeId)).toBe(true);

    const v2 = hostBook.removeMember(hostId, "lab", memberId.nodeId);
    expect(memberBook.accept(v2)).toBe("newer");
    expect(memberBook.isMember(other.nodeId)).toBe(false);
    expect(memberBook.isMember(hostId.nodeId)).toBe(false);
    expect(memberBook.isAdmin(hostId.nodeId)).toBe(false);
    expect(memberBook.isAdmin(other.nodeId)).toBe(false);
    expect(memberBook.active()).toEqual([]);
    expect(memberBook.visibleTo(other.nodeId)).toEqual([]);
    // and a newer version that adds it back restores them
    const v3 = hostBook.addMember(hostId, "lab", member(memberId));
    expect(memberBook.accept(v3)).toBe("newer");
    expect(memberBook.isMember(other.nodeId)).toBe(true);
  });

  test("isAdmin: self, the host and admin-role members, not plain members", () => {
    const admin = generateIdentity();
    const plain = generateIdentity();
    const v1 = hostBook.host(hostId, "lab", [member(memberId), member(admin, "admin"), member(plain)], []);
    memberBook.join(v1);
    expect(memberBook.isAdmin(memberId.nodeId)).toBe(true);
    expect(memberBook.isAdmin(hostId.nodeId)).toBe(true);
    expect(memberBook.isAdmin(admin.nodeId)).toBe(true);
    expect(memberBook.isAdmin(plain.nodeId)).toBe(false);
    expect(memberBook.isAdmin(other.nodeId)).toBe(false);
    expect(memberBook.isMember(plain.nodeId)).toBe(true);
    // on the host's own book too
    expect(hostBook.isAdmin(admin.nodeId)).toBe(true);
    expect(hostBook.isAdmin(plain.nodeId)).toBe(false);
  });

  test("an admin in one cluster stays admin when another cluster lists it as a plain member", () => {
    const both = generateIdentity();
    memberBook.join(hostBook.host(hostId, "a", [member(memberId), member(both, "admin")], []));
    memberBook.join(hostBook.host(hostId, "b", [member(memberId), member(both, "member")], []));
    expect(memberBook.isAdmin(both.nodeId)).toBe(true);
  });
});

describe("addMember / removeMember / hosted", () => {
  test("publish new signed versions, stored and in effect", () => {
    const v1 = hostBook.host(hostId, "lab", [member(memberId)], []);
    const v2 = hostBook.addMember(hostId, "lab", member(other, "admin"));
    expect(v2.cluster.version).toBeGreaterThan(v1.cluster.version);
    expect(verifyCluster(v2)).toEqual(v2);
    expect(hostBook.isAdmin(other.nodeId)).toBe(true);
    // updating an existing member replaces it, no duplicate
    const v3 = hostBook.addMember(hostId, "lab", member(other, "member"));
    expect(v3.cluster.version).toBeGreaterThan(v2.cluster.version);
    expect(v3.cluster.members.filter((m) => m.id === other.nodeId)).toEqual([member(other, "member")]);
    expect(hostBook.isAdmin(other.nodeId)).toBe(false);
    const v4 = hostBook.removeMember(hostId, "lab", memberId.nodeId);
    expect(v4.cluster.version).toBeGreaterThan(v3.cluster.version);
    expect(verifyCluster(v4)).toEqual(v4);
    expect(v4.cluster.members.some((m) => m.id === memberId.nodeId)).toBe(false);
    expect(hostBook.isMember(memberId.nodeId)).toBe(false);
    expect(hostStore.clusters.get(hostId.nodeId, "lab")?.version).toBe(v4.cluster.version);
  });

  test("removing the host itself or a non-member throws and publishes nothing", () => {
    const v1 = hostBook.host(hostId, "lab", [member(memberId)], []);
    expect(
      isP2prcError(
        thrown(() => hostBook.removeMember(hostId, "lab", hostId.nodeId)),
        "E_INVALID",
      ),
    ).toBe(true);
    expect(
      isP2prcError(
        thrown(() => hostBook.removeMember(hostId, "lab", other.nodeId)),
        "E_NOT_FOUND",
      ),
    ).toBe(true);
    expect(
      isP2prcError(thrown(() => hostBook.addMember(hostId, "lab", { id: "x", label: "", role: "member" }))),
    ).toBe(true);
    expect(hostBook.get(hostId.nodeId, "lab")).toEqual(v1);
  });

  test("a member cannot add members to a cluster it only joined", () => {
    memberBook.join(hostBook.host(hostId, "lab", [member(memberId)], []));
    expect(
      isP2prcError(
        thrown(() => memberBook.addMember(memberId, "lab", member(other))),
        "E_NOT_FOUND",
      ),
    ).toBe(true);
    expect(memberBook.isMember(other.nodeId)).toBe(false);
  });

  test("hosted(): by name, the only one, none, or ambiguous", () => {
    expect(
      isP2prcError(
        thrown(() => hostBook.hosted(hostId, "lab")),
        "E_NOT_FOUND",
      ),
    ).toBe(true);
    expect(
      isP2prcError(
        thrown(() => hostBook.hosted(hostId, undefined)),
        "E_INVALID",
      ),
    ).toBe(true);
    const lab = hostBook.host(hostId, "lab", [], []);
    expect(hostBook.hosted(hostId, undefined)).toEqual(lab.cluster);
    const ops = hostBook.host(hostId, "ops", [], []);
    expect(
      isP2prcError(
        thrown(() => hostBook.hosted(hostId, undefined)),
        "E_INVALID",
      ),
    ).toBe(true);
    expect(hostBook.hosted(hostId, "ops")).toEqual(ops.cluster);
    expect(
      isP2prcError(
        thrown(() => hostBook.hosted(hostId, "nope")),
        "E_NOT_FOUND",
      ),
    ).toBe(true);
  });
});

describe("digest / newerThan / olderThan", () => {
  test("two books on different versions report what each should send", () => {
    const v1 = hostBook.host(hostId, "lab", [member(memberId)], []);
    memberBook.join(v1);
    const ops = hostBook.host(hostId, "ops", [], []); // the member never joined it
    const v2 = hostBook.addMember(hostId, "lab", member(other));

    expect(memberBook.digest()).toEqual([[hostId.nodeId, "lab", v1.cluster.version]]);
    expect(hostBook.digest()).toHaveLength(2);
    expect(hostBook.digest()).toContainEqual([hostId.nodeId, "lab", v2.cluster.version]);
    expect(hostBook.digest()).toContainEqual([hostId.nodeId, "ops", ops.cluster.version]);

    // the host holds a newer lab, and only lab: ops was not listed by the member
    expect(hostBook.newerThan(memberBook.digest())).toEqual([v2]);
    expect(hostBook.olderThan(memberBook.digest())).toEqual([]);
    // the member holds nothing newer, and says which of the host's entries it lacks (with its version)
    expect(memberBook.newerThan(hostBook.digest())).toEqual([]);
    expect(memberBook.olderThan(hostBook.digest())).toEqual([[hostId.nodeId, "lab", v1.cluster.version]]);

    expect(hostBook.newerThan([])).toEqual([]);
    expect(hostBook.newerThan([[hostId.nodeId, "ops", 1]])).toEqual([ops]);
    expect(hostBook.newerThan([[other.nodeId, "lab", 1]])).toEqual([]);

    for (const s of hostBook.newerThan(memberBook.digest())) expect(memberBook.accept(s)).toBe("newer");
    expect(memberBook.digest()).toEqual([[hostId.nodeId, "lab", v2.cluster.version]]);
    expect(hostBook.newerThan(memberBook.digest())).toEqual([]);
    expect(memberBook.olderThan(hostBook.digest())).toEqual([]);
  });
});

describe("reload()", () => {
  test("picks up a document another ClusterBook wrote to the same database file, once", () => {
    const path = join(root, "reload", "state.db");
    const nodeStore = openStore(path);
    const cliStore = openStore(path);
    try {
      const node = book(nodeStore, hostId, clock);
      const seen: SignedCluster[] = [];
      node.onChange((c) => seen.push(c));

      const cli = book(cliStore, hostId, clock);
      const v1 = cli.host(hostId, "lab", [member(memberId)], []);
      expect(node.isMember(memberId.nodeId)).toBe(false); // cached until reload

      expect(node.reload()).toEqual([v1]);
      expect(seen).toEqual([v1]);
      expect(node.get(hostId.nodeId, "lab")).toEqual(v1);
      expect(node.isMember(memberId.nodeId)).toBe(true);

      expect(node.reload()).toEqual([]);
      expect(seen).toEqual([v1]);

      const v2 = cli.addMember(hostId, "lab", member(other));
      expect(node.reload()).toEqual([v2]);
      expect(seen).toEqual([v1, v2]);
      expect(node.isMember(other.nodeId)).toBe(true);

      // a cluster left by the CLI is dropped, no listener call
      cli.leave(hostId.nodeId, "lab");
      expect(node.reload()).toEqual([]);
      expect(seen).toEqual([v1, v2]);
      expect(node.isMember(memberId.nodeId)).toBe(false);
    } finally {
      nodeStore.close();
      cliStore.close();
    }
  });

  test("on a shared in-memory store, and accept() finds a cluster the CLI joined since", () => {
    const node = book(memberStore, memberId, clock);
    const cli = book(memberStore, memberId, clock);
    const v1 = hostBook.host(hostId, "lab", [member(memberId)], []);
    cli.join(v1);
    const v2 = hostBook.addMember(hostId, "lab", member(other));
    const seen: SignedCluster[] = [];
    node.onChange((c) => seen.push(c));
    expect(node.accept(v2)).toBe("newer");
    expect(seen).toContainEqual(v2);
    expect(node.isMember(other.nodeId)).toBe(true);
    expect(memberStore.clusters.get(hostId.nodeId, "lab")?.version).toBe(v2.cluster.version);
  });

  test("skips a row whose document does not verify", () => {
    const s = doc(hostId, { members: [member(hostId, "admin"), member(other)] });
    const forged = { ...s, cluster: { ...s.cluster, members: [...s.cluster.members, member(memberId)] } };
    hostStore.clusters.put(
      { host: hostId.nodeId, name: "lab", version: 1, document: JSON.stringify(forged) },
      clock.now(),
    );
    const b = book(hostStore, memberId, clock);
    expect(b.list()).toEqual([]);
    expect(b.isMember(other.nodeId)).toBe(false);
  });
});

describe("vouches()", () => {
  test("this node, trusted ids and its clusters' members are vouched for; on an open network nobody else is", () => {
    const friend = generateIdentity();
    const open = book(openStore(":memory:"), hostId, clock, { trusted: [friend.nodeId], openNetwork: true });
    open.host(hostId, "lab", [member(memberId)], []);
    for (const id of [hostId, friend, memberId]) expect(open.vouches(id.nodeId)).toBe(true);
    expect(open.isMember(other.nodeId)).toBe(true); // may use the node
    expect(open.vouches(other.nodeId)).toBe(false); // but its record is not taken on a third party's word
    // vouchedIds: the same ids, this node's own aside (the reachability check asks among them)
    expect(open.vouchedIds().sort()).toEqual([friend.nodeId, memberId.nodeId].sort());
  });
});
