// Naming a node: auto placement, host:port, exact id, unique prefix, name, ambiguity and unknowns.
import { describe, expect, test } from "bun:test";
import { P2prcError } from "../core/index.ts";
import type { PeerView } from "../p2p/index.ts";
import { rankNodes, resolveNode } from "./resolve.ts";

const OFFER = {
  cpus: 4,
  memoryMb: 8192,
  gpus: 0,
  freeContainers: 5,
  maxCpusPerContainer: 2,
  maxMemoryMbPerContainer: 2048,
};

/** A 64-hex id starting with `prefix`. */
const idOf = (prefix: string) => prefix.padEnd(64, "0");

function view(
  prefix: string,
  name: string,
  port: number,
  over: Partial<Omit<PeerView, "offer">> & { free?: number } = {},
): PeerView {
  const { free, ...rest } = over;
  return {
    id: idOf(prefix),
    name,
    address: "127.0.0.1",
    port,
    nat: false,
    latencyMs: 10,
    lastSeen: "2026-01-01T00:00:00.000Z",
    metadata: "",
    state: "alive",
    self: false,
    tls: false,
    reach: "direct",
    relays: [],
    offer: { ...OFFER, freeContainers: free ?? OFFER.freeContainers },
    ...rest,
  };
}

function thrown(fn: () => unknown): P2prcError {
  try {
    fn();
  } catch (err) {
    if (err instanceof P2prcError) return err;
    throw err;
  }
  throw new Error("expected a P2prcError, nothing was thrown");
}

const alpha = view("aaaa1111", "alpha", 9001);
const beta = view("bbbb2222", "beta", 9002);
const gamma = view("bbbb3333", "gamma", 9003);
const TABLE = [alpha, beta, gamma];

describe("resolveNode: auto", () => {
  test("picks the node with the most free container slots, whatever its latency", () => {
    const views = [
      view("a1", "few", 9001, { free: 1, latencyMs: 1 }),
      view("a2", "many", 9002, { free: 8, latencyMs: 90 }),
      view("a3", "some", 9003, { free: 4, latencyMs: 2 }),
    ];
    const t = resolveNode("auto", views);
    expect(t).toMatchObject({ id: idOf("a2"), name: "many", url: "http://127.0.0.1:9002" });
  });

  test("between equally free nodes, the lowest latency wins; unknown latency counts as slowest", () => {
    const views = [
      view("c1", "unknown", 9001, { free: 3, latencyMs: undefined }),
      view("c2", "slow", 9002, { free: 3, latencyMs: 40 }),
      view("c3", "fast", 9003, { free: 3, latencyMs: 5 }),
      view("c4", "fewer", 9004, { free: 2, latencyMs: 0.1 }),
    ];
    expect(resolveNode("auto", views).name).toBe("fast");
    expect(rankNodes(views).map((v) => v.name)).toEqual(["fast", "slow", "unknown", "fewer"]);
  });

  test("suspect nodes, nodes without an address and full nodes are never picked", () => {
    const views = [
      view("d1", "suspect", 9001, { free: 9, state: "suspect" }),
      view("d2", "no-address", 9002, { free: 9, address: undefined, port: undefined }),
      view("d3", "full", 9003, { free: 0, latencyMs: 0 }),
      view("d4", "ok", 9004, { free: 1, latencyMs: 80 }),
    ];
    expect(resolveNode("auto", views).name).toBe("ok");
    expect(rankNodes(views).map((v) => v.name)).toEqual(["ok"]);
  });

  test("no node with free capacity → E_NOT_FOUND", () => {
    const err = thrown(() => resolveNode("auto", [view("e1", "full", 9001, { free: 0 })]));
    expect(err.code).toBe("E_NOT_FOUND");
    expect(thrown(() => resolveNode("auto", [])).code).toBe("E_NOT_FOUND");
  });
});

describe("resolveNode: host:port, id, prefix, name", () => {
  test("host:port of a known node → its id and name", () => {
    expect(resolveNode("127.0.0.1:9002", TABLE)).toMatchObject({
      url: "http://127.0.0.1:9002",
      id: beta.id,
      name: "beta",
    });
  });

  test("host:port of an unknown node → just the URL (the node need not be in the table)", () => {
    const t = resolveNode("10.1.2.3:7777", TABLE);
    expect(t.url).toBe("http://10.1.2.3:7777");
    expect(t.id).toBeUndefined();
    expect(resolveNode("[::1]:8088", []).url).toBe("http://[::1]:8088");
    expect(resolveNode("example.org:443", []).url).toBe("http://example.org:443");
  });

  test("an exact id, in either case", () => {
    expect(resolveNode(gamma.id, TABLE).name).toBe("gamma");
    expect(resolveNode(gamma.id.toUpperCase(), TABLE).name).toBe("gamma");
  });

  test("a unique id prefix of 4+ hex characters", () => {
    expect(resolveNode("aaaa", TABLE).name).toBe("alpha");
    expect(resolveNode("bbbb3", TABLE).name).toBe("gamma");
    expect(resolveNode("BBBB2", TABLE).name).toBe("beta");
  });

  test("a prefix shorter than 4 characters is not taken as a prefix", () => {
    expect(thrown(() => resolveNode("aaa", TABLE)).code).toBe("E_NOT_FOUND");
  });

  test("a name, with surrounding whitespace trimmed", () => {
    expect(resolveNode("beta", TABLE)).toMatchObject({ id: beta.id, url: "http://127.0.0.1:9002" });
    expect(resolveNode("  alpha ", TABLE).id).toBe(alpha.id);
  });

  test("an ambiguous prefix → E_INVALID on field node, naming the candidates", () => {
    const err = thrown(() => resolveNode("bbbb", TABLE));
    expect(err.code).toBe("E_INVALID");
    expect(err.field).toBe("node");
    expect(err.message).toContain("beta");
    expect(err.message).toContain("gamma");
  });

  test("an ambiguous name → E_INVALID", () => {
    const twins = [view("f1", "twin", 9001), view("f2", "twin", 9002)];
    const err = thrown(() => resolveNode("twin", twins));
    expect(err.code).toBe("E_INVALID");
    expect(err.field).toBe("node");
  });

  test("an unknown name, prefix or id → E_NOT_FOUND on field node", () => {
    for (const ref of ["nobody", "cccc", idOf("ffff")]) {
      const err = thrown(() => resolveNode(ref, TABLE));
      expect(err.code).toBe("E_NOT_FOUND");
      expect(err.field).toBe("node");
      expect(err.message).toContain(ref);
    }
  });

  test("a known node without an address → E_NODE_UNREACHABLE, not a bogus URL", () => {
    const hidden = view("9999", "hidden", 9009, { address: undefined, port: undefined });
    expect(thrown(() => resolveNode("hidden", [hidden])).code).toBe("E_NODE_UNREACHABLE");
  });
});

describe("auto --gpu and dead nodes (issue 18, defects 7 and 10)", () => {
  const withGpus = (v: PeerView, gpus: number): PeerView => ({ ...v, offer: { ...v.offer, gpus } });

  test("auto with gpu picks a node offering GPUs even when one without has more room", () => {
    const roomy = view("aaaa", "roomy", 1, { free: 9 });
    const gpu = withGpus(view("bbbb", "gpu", 2, { free: 1 }), 2);
    expect(resolveNode("auto", [roomy, gpu], { gpu: true }).name).toBe("gpu");
    expect(resolveNode("auto", [roomy, gpu]).name).toBe("roomy");
  });

  test("auto with gpu and no node offering GPUs says so, on field gpu", () => {
    const err = thrown(() => resolveNode("auto", [view("aaaa", "plain", 1)], { gpu: true }));
    expect(err.code).toBe("E_NOT_FOUND");
    expect(err.field).toBe("gpu");
    expect(err.message).toBe("no known node with free capacity has GPUs");
  });

  test("a dead node's id or prefix is reported as dead, not unknown", () => {
    const deadId = idOf("dead");
    for (const ref of [deadId, "dead00"]) {
      const err = thrown(() => resolveNode(ref, [view("aaaa", "alive", 1)], {}, [{ id: deadId }]));
      expect(err.code).toBe("E_NODE_UNREACHABLE");
      expect(err.message).toContain("is dead");
      expect(err.message).not.toContain("unknown");
    }
    // without the tombstone it is unknown, as before
    expect(thrown(() => resolveNode("dead00", [view("aaaa", "alive", 1)])).message).toContain("unknown node");
  });

  test("a dead node's former name is reported as dead, with its id", () => {
    const deadId = idOf("dead");
    const err = thrown(() =>
      resolveNode("bob", [view("aaaa", "alive", 1)], {}, [{ id: deadId, name: "bob" }]),
    );
    expect(err.code).toBe("E_NODE_UNREACHABLE");
    expect(err.message).toBe(
      `node bob (${deadId.slice(0, 12)}) is dead: the network declared it gone (it stopped answering or left)`,
    );
    // a live node of the same name wins over the tombstone
    expect(resolveNode("alive", [view("aaaa", "alive", 1)], {}, [{ id: deadId, name: "alive" }]).name).toBe(
      "alive",
    );
  });
});
