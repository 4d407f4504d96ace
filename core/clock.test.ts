import { describe, expect, test } from "bun:test";
import { ManualClock, systemClock } from "./clock.ts";

describe("ManualClock", () => {
  test("now() starts where told and moves only on advance", () => {
    const clock = new ManualClock(1000);
    expect(clock.now()).toBe(1000);
    clock.advance(250);
    expect(clock.now()).toBe(1250);
  });

  test("timeouts fire in due order, each seeing its own time", () => {
    const clock = new ManualClock(0);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`c@${clock.now()}`), 300);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 100);
    clock.setTimeout(() => fired.push(`b@${clock.now()}`), 200);
    clock.advance(99);
    expect(fired).toEqual([]);
    clock.advance(1);
    expect(fired).toEqual(["a@100"]);
    clock.advance(500);
    expect(fired).toEqual(["a@100", "b@200", "c@300"]);
    expect(clock.now()).toBe(600);
    expect(clock.pending()).toBe(0);
  });

  test("timers due at the same time fire in the order they were set", () => {
    const clock = new ManualClock(0);
    const fired: number[] = [];
    for (const n of [1, 2, 3]) clock.setTimeout(() => fired.push(n), 50);
    clock.advance(50);
    expect(fired).toEqual([1, 2, 3]);
  });

  test("intervals fire every period, interleaved with timeouts", () => {
    const clock = new ManualClock(0);
    const fired: string[] = [];
    clock.setInterval(() => fired.push(`i@${clock.now()}`), 100);
    clock.setTimeout(() => fired.push(`t@${clock.now()}`), 250);
    clock.advance(350);
    expect(fired).toEqual(["i@100", "i@200", "t@250", "i@300"]);
    expect(clock.pending()).toBe(1);
  });

  test("cancel stops a timeout and an interval", () => {
    const clock = new ManualClock(0);
    let timeouts = 0;
    let ticks = 0;
    const cancelTimeout = clock.setTimeout(() => timeouts++, 100);
    const cancelInterval = clock.setInterval(() => ticks++, 10);
    cancelTimeout();
    clock.advance(35);
    expect(ticks).toBe(3);
    cancelInterval();
    clock.advance(100);
    expect(ticks).toBe(3);
    expect(timeouts).toBe(0);
    expect(clock.pending()).toBe(0);
  });

  test("an interval can cancel itself from its own callback", () => {
    const clock = new ManualClock(0);
    let ticks = 0;
    const cancel = clock.setInterval(() => {
      ticks++;
      if (ticks === 2) cancel();
    }, 10);
    clock.advance(100);
    expect(ticks).toBe(2);
  });

  test("a timer set from a callback fires within the same advance when due", () => {
    const clock = new ManualClock(0);
    const fired: number[] = [];
    clock.setTimeout(() => {
      fired.push(clock.now());
      clock.setTimeout(() => fired.push(clock.now()), 20);
    }, 10);
    clock.advance(25);
    expect(fired).toEqual([10]);
    clock.advance(5);
    expect(fired).toEqual([10, 30]);
  });

  test("sleep resolves only after advance", async () => {
    const clock = new ManualClock(0);
    let done = false;
    const p = clock.sleep(1000).then(() => {
      done = true;
    });
    clock.advance(999);
    await Promise.resolve();
    expect(done).toBe(false);
    clock.advance(1);
    await p;
    expect(done).toBe(true);
    expect(clock.now()).toBe(1000);
  });
});

describe("systemClock", () => {
  test("now is wall-clock time and timers can be cancelled", async () => {
    expect(Math.abs(systemClock.now() - Date.now())).toBeLessThan(50);
    let fired = false;
    const cancel = systemClock.setTimeout(() => {
      fired = true;
    }, 5);
    cancel();
    await systemClock.sleep(20);
    expect(fired).toBe(false);
  });
});
