// The pure sync core at scale (p2p/gossip-sim.ts): a new record version reaches every node in
// O(log N) rounds, and an unchanged network costs the same bytes per node whatever its size.
import { describe, expect, test } from "bun:test";
import { simulate } from "./gossip-sim.ts";

describe("gossip simulation (in-memory network, ManualClock)", () => {
  test("N = 1000: a new version reaches every node within log2 N rounds, spreading faster each round", () => {
    const r = simulate({ nodes: 1000, seed: 7 });
    expect(r.rounds).toBeLessThanOrEqual(Math.ceil(Math.log2(1000)));
    expect(r.spread.at(-1)).toBe(1000);
    for (let i = 1; i < r.spread.length; i++)
      expect(r.spread[i] as number).toBeGreaterThan(r.spread[i - 1] as number);
    expect(r.convergeMs).toBe(r.rounds * 1000);
  });

  test("rounds grow as log N: N = 100 → 1000 → 5000 adds at most a few rounds each", () => {
    const [a, b, c] = [100, 1000, 5000].map((nodes) => simulate({ nodes, seed: 3 }).rounds) as [
      number,
      number,
      number,
    ];
    expect(a).toBeLessThanOrEqual(Math.ceil(Math.log2(100)));
    expect(b - a).toBeLessThanOrEqual(3);
    expect(c - b).toBeLessThanOrEqual(3);
  });

  test("an unchanged network: the same bytes per node per round at N = 100 and N = 2000", () => {
    const small = simulate({ nodes: 100 });
    const large = simulate({ nodes: 2000 });
    expect(small.bytesPerNodeRoundSteady).toBeGreaterThan(0);
    expect(large.bytesPerNodeRoundSteady / small.bytesPerNodeRoundSteady).toBeLessThan(1.1);
  });

  test("fanout 1 is slower than fanout 3, and still logarithmic (push-pull)", () => {
    const one = simulate({ nodes: 1000, fanout: 1 });
    const three = simulate({ nodes: 1000, fanout: 3 });
    expect(one.rounds).toBeGreaterThan(three.rounds);
    expect(one.rounds).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(1000)));
  });
});
