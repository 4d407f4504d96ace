// The introductions: records of new nodes that peers passed on, bounded in all and per introducer.
import { describe, expect, test } from "bun:test";
import { generateIdentity, ManualClock } from "../core/index.ts";
import { signedRecord } from "./fixtures.ts";
import { Introductions } from "./introductions.ts";

const rec = (over = {}) => signedRecord(generateIdentity(), over);

function book(max = 10, perPeer = 3) {
  const clock = new ManualClock();
  return { clock, intro: new Introductions({ clock, max, perPeer, rejectMs: 60_000 }) };
}

describe("introductions", () => {
  test("one introducer gets perPeer waiting records; another still gets its own", () => {
    const { intro } = book(10, 3);
    const taken = Array.from({ length: 20 }, () => intro.offer(rec(), "mallory"));
    expect(taken.filter(Boolean).length).toBe(3);
    expect(intro.offer(rec(), "alice")).toBe(true);
    expect(intro.size).toBe(4);
  });

  test("at most `max` wait in all", () => {
    const { intro } = book(5, 100);
    for (let i = 0; i < 5; i++) expect(intro.offer(rec(), `peer-${i}`)).toBe(true);
    expect(intro.offer(rec(), "another")).toBe(false);
    expect(intro.size).toBe(5);
  });

  test("a record with no address cannot be probed and is not kept", () => {
    const { intro } = book();
    expect(intro.offer(rec({ addresses: [] }), "alice")).toBe(false);
  });

  test("an unreachable introduction still counts against its introducer until rejectMs is over", () => {
    const { clock, intro } = book(10, 2);
    const a = rec();
    const b = rec();
    intro.offer(a, "mallory");
    intro.offer(b, "mallory");
    expect(intro.take(10).map((r) => r.record.id)).toEqual([a.record.id, b.record.id]);
    intro.unreachable(a.record.id);
    intro.unreachable(b.record.id);
    expect(intro.size).toBe(0);
    expect(intro.offer(rec(), "mallory")).toBe(false); // budget spent on the failures
    expect(intro.wants(a.record.id, a.record.version)).toBe(false); // neither asked for nor probed again
    expect(intro.offer(a, "alice")).toBe(false);
    clock.advance(60_001);
    expect(intro.wants(a.record.id, a.record.version)).toBe(true);
    expect(intro.offer(rec(), "mallory")).toBe(true);
  });

  test("a node whose probe failed may be probed again after retryMs, doubled for each failure in a row", () => {
    const clock = new ManualClock();
    const intro = new Introductions({ clock, max: 10, perPeer: 5, rejectMs: 10_000, retryMs: 2000 });
    const a = rec();
    const fail = () => {
      expect(intro.offer(a, "alice")).toBe(true);
      intro.take(1);
      intro.unreachable(a.record.id);
    };
    const setAsideFor = () => {
      let ms = 0;
      while (!intro.wants(a.record.id, a.record.version)) {
        clock.advance(500);
        ms += 500;
      }
      return ms;
    };
    fail();
    expect(setAsideFor()).toBe(2000);
    fail();
    expect(setAsideFor()).toBe(4000);
    fail();
    expect(setAsideFor()).toBe(8000);
    fail();
    expect(setAsideFor()).toBe(10_000); // rejectMs at most
    // once admitted, a later failure starts again from retryMs
    expect(intro.offer(a, "alice")).toBe(true);
    intro.take(1);
    intro.admitted(a.record.id);
    fail();
    expect(setAsideFor()).toBe(2000);
  });

  test("an admitted introduction gives its introducer the budget back", () => {
    const { intro } = book(10, 1);
    const a = rec();
    intro.offer(a, "alice");
    expect(intro.offer(rec(), "alice")).toBe(false);
    intro.take(1);
    intro.admitted(a.record.id);
    expect(intro.offer(rec(), "alice")).toBe(true);
  });

  test("a newer version of a waiting record replaces it; an equal one is not wanted", () => {
    const { intro } = book();
    const who = generateIdentity();
    intro.offer(signedRecord(who, { version: 1 }), "alice");
    expect(intro.wants(who.nodeId, 1)).toBe(false);
    expect(intro.wants(who.nodeId, 2)).toBe(true);
    intro.offer(signedRecord(who, { version: 2 }), "bob");
    expect(intro.take(1)[0]?.record.version).toBe(2);
  });

  test("room: what an introducer may still introduce, within what is left in all", () => {
    const { intro } = book(5, 3);
    expect(intro.room("alice")).toBe(3);
    intro.offer(rec(), "alice");
    expect(intro.room("alice")).toBe(2);
    for (let i = 0; i < 4; i++) intro.offer(rec(), `peer-${i}`);
    expect(intro.size).toBe(5);
    expect(intro.room("bob")).toBe(0);
  });
});
