import { expect, test } from "bun:test";
import { PassThrough } from "node:stream";
import { createLogger } from "./logger.ts";

function capture() {
  const out = new PassThrough();
  const chunks: string[] = [];
  out.on("data", (c: Buffer) => chunks.push(c.toString()));
  return { out, text: () => chunks.join("") };
}

test("createLogger writes one tagged line per entry and honours the level", () => {
  const { out, text } = capture();
  const log = createLogger("info", "p2prc", out);
  log.info("listening on %s", "http://x");
  log.withTag("server").warn("slow peer", { ms: 5 });
  log.debug("not shown");
  const lines = text().trim().split("\n");
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z info \[p2prc\] listening on http:\/\/x$/);
  expect(lines[1]).toContain("warn [p2prc:server] slow peer { ms: 5 }");
});

test("level silent writes nothing, debug writes debug lines", () => {
  const silent = capture();
  createLogger("silent", "t", silent.out).error("x");
  expect(silent.text()).toBe("");
  const debug = capture();
  createLogger("debug", "t", debug.out).debug("deep");
  expect(debug.text()).toContain("debug [t] deep");
});
