import { expect, test } from "bun:test";
import { pacedCollector } from "./memory.ts";

test("a collection every `everyBytes` moved, and never two within `minMs`", () => {
  let t = 0;
  let runs = 0;
  const moved = pacedCollector({ everyBytes: 100, minMs: 50, collect: () => runs++, now: () => t });
  moved(99);
  expect(runs).toBe(0);
  moved(1);
  expect(runs).toBe(1);
  moved(300); // enough bytes, too soon
  expect(runs).toBe(1);
  t = 49;
  moved(1);
  expect(runs).toBe(1);
  t = 50;
  moved(1); // the bytes held back count now
  expect(runs).toBe(2);
  moved(50);
  expect(runs).toBe(2);
});
