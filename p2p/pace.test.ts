import { describe, expect, test } from "bun:test";
import {
  baseTimeoutMs,
  exchangeTimeoutMs,
  failureCounts,
  keepSession,
  Lateness,
  maxTimeoutMs,
  RoundTrips,
  SeedPauses,
  Window,
} from "./pace.ts";

describe("exchange timeouts", () => {
  test("a healthy network keeps the base: 0.8 × the interval within 150 ms … 2 s", () => {
    expect(baseTimeoutMs(1000)).toBe(800);
    expect(baseTimeoutMs(100)).toBe(150);
    expect(baseTimeoutMs(10_000)).toBe(2000);
    const rtts = new RoundTrips();
    for (const ms of [3, 5, 4, 6, 3]) rtts.sample(ms);
    expect(
      exchangeTimeoutMs({ intervalMs: 1000, suspectTimeoutMs: 5000, measuredMs: rtts.timeoutMs, backoff: 0 }),
    ).toBe(800);
  });

  test("late answers raise it (srtt + 4 × rttvar), within half the suspect timeout", () => {
    const rtts = new RoundTrips();
    expect(rtts.timeoutMs).toBeUndefined();
    for (const ms of [600, 900, 700, 1200]) rtts.sample(ms);
    const measured = rtts.timeoutMs as number;
    expect(measured).toBeGreaterThan(1200);
    const o = { intervalMs: 1000, suspectTimeoutMs: 15_000, backoff: 0 };
    expect(exchangeTimeoutMs({ ...o, measuredMs: measured })).toBe(Math.ceil(measured));
    expect(exchangeTimeoutMs({ ...o, measuredMs: 60_000 })).toBe(7500);
    expect(maxTimeoutMs(1000, 15_000)).toBe(7500);
    // never under the base, even with a tiny suspect timeout
    expect(maxTimeoutMs(1000, 200)).toBe(800);
  });

  test("each timeout in a row doubles the peer's next one, up to the maximum", () => {
    const o = { intervalMs: 1000, suspectTimeoutMs: 10_000, measuredMs: undefined };
    expect([0, 1, 2, 3, 20].map((backoff) => exchangeTimeoutMs({ ...o, backoff }))).toEqual([
      800, 1600, 3200, 5000, 5000,
    ]);
  });
});

describe("failures while this node runs late", () => {
  test("a timeout counts unless this node's lag was at least a quarter of the time the exchange had", () => {
    expect(failureCounts({ timedOut: true, lagMs: 0, timeoutMs: 800 })).toBe(true);
    expect(failureCounts({ timedOut: true, lagMs: 199, timeoutMs: 800 })).toBe(true);
    expect(failureCounts({ timedOut: true, lagMs: 200, timeoutMs: 800 })).toBe(false);
    // a refused connection or an error answer always counts: a dead peer is found dead on a busy host too
    expect(failureCounts({ timedOut: false, lagMs: 5000, timeoutMs: 800 })).toBe(true);
  });

  test("lateness is each tick's delay past the interval, decaying by half a tick", () => {
    const l = new Lateness();
    l.tick(0, 1000);
    l.tick(1000, 1000);
    expect(l.lagMs).toBe(0);
    l.tick(2600, 1000); // 600 ms late
    expect(l.lagMs).toBe(600);
    l.tick(3600, 1000);
    expect(l.lagMs).toBe(300);
    l.tick(4800, 1000); // 200 ms late: more than the decayed 150
    expect(l.lagMs).toBe(200);
    l.tick(5800, 1000);
    l.tick(6800, 1000);
    expect(l.lagMs).toBe(50);
  });
});

describe("the congestion window (issue 12)", () => {
  test("a timeout halves it, down to one; answers with no timeout raise it by one, up to the fanout", () => {
    const o = (timeouts: number, answered: number) => ({ timeouts, answered });
    const w = new Window(3);
    expect([w.value, w.reduced]).toEqual([3, false]);
    w.round(o(1, 2));
    expect([w.value, w.reduced]).toEqual([1, true]);
    w.round(o(0, 0)); // nothing answered, nothing timed out (refusals only): unchanged
    expect(w.value).toBe(1);
    w.round(o(0, 1));
    expect(w.value).toBe(2);
    w.round(o(0, 2));
    w.round(o(0, 2));
    expect([w.value, w.reduced]).toEqual([3, false]);
    const wide = new Window(8);
    wide.round(o(1, 0));
    expect(wide.value).toBe(4);
  });

  test("the stretch follows exchanges with peers that were alive: up while they time out, down while they answer; suspects' timeouts leave it", () => {
    const o = (timeouts: number, answered: number) => ({ timeouts, answered });
    const w = new Window(3);
    expect(w.stretch).toBe(1);
    // one dead host among live peers: timed out once while alive (a quiet round, its only contact), then
    // a suspect that times out every round beside an alive peer that answers
    w.round(o(1, 0));
    expect(w.stretch).toBe(2);
    w.round(o(1, 1), o(0, 1));
    expect(w.stretch).toBe(1);
    for (let r = 0; r < 5; r++) w.round(o(1, 1), o(0, 1));
    expect([w.stretch, w.value]).toEqual([1, 1]); // declared dead after one suspect timeout, as before
    // peers that were answering stop answering in time (an overloaded host): up to the fanout
    for (let r = 0; r < 4; r++) w.round(o(2, 1));
    expect(w.stretch).toBe(3);
    w.round(o(1, 1)); // as many alive peers timed out as answered: still up
    expect(w.stretch).toBe(3);
    w.round(o(0, 2));
    w.round(o(0, 1));
    expect(w.stretch).toBe(1);
  });
});

describe("seed pauses (issue 12)", () => {
  test("after k timeouts in a row a seed waits 2^(k−1) … 2^k − 1 rounds, at most 31; an answer ends it", () => {
    for (const r of [0, 0.999]) {
      const p = new SeedPauses(() => r);
      const waits: number[] = [];
      let round = 0;
      for (let k = 0; k < 7; k++) {
        p.timedOut("s", round);
        let next = round + 1;
        while (!p.due("s", next)) next++;
        waits.push(next - round);
        round = next;
      }
      expect(waits).toEqual(r === 0 ? [1, 2, 4, 8, 16, 16, 16] : [1, 3, 7, 15, 31, 31, 31]);
      p.answered("s");
      expect(p.due("s", round + 1)).toBe(true);
      expect(p.due("other", 0)).toBe(true);
    }
  });
});

describe("keep-alive sessions after an exchange (issue 12)", () => {
  test("kept when the peer comes round again before the idle timeout, closed when not", () => {
    const at = (alive: number, perRound: number) =>
      keepSession({ alive, perRound, intervalMs: 1000, idleTimeoutMs: 160_000 });
    expect(at(10, 1)).toBe(true); // a quiet network of 10: every ~10 s
    expect(at(99, 1)).toBe(true); // of 100: every ~99 s
    expect(at(200, 1)).toBe(false); // of 200: every ~200 s, after the connection closed anyway
    expect(at(200, 3)).toBe(true); // full rounds (discovery, changes): every ~67 s
    expect(at(1000, 3)).toBe(false);
    expect(at(5, 0)).toBe(true);
  });
});
