import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { P2prcError } from "../../core/index.ts";
import { spoolBody } from "./body.ts";

const dir = mkdtempSync(join(tmpdir(), "p2prc-spool-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A chunked body (no content-length) of `n` chunks of `size` bytes, byte i of chunk k = (k + i) % 251. */
function chunked(n: number, size: number): { req: Request; sha256: string } {
  const hash = createHash("sha256");
  const chunks = Array.from({ length: n }, (_, k) =>
    Uint8Array.from({ length: size }, (_, i) => (k + i) % 251),
  );
  for (const c of chunks) hash.update(c);
  let k = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      const next = chunks[k++];
      if (!next) return c.close();
      await Bun.sleep(0);
      c.enqueue(next);
    },
  });
  return { req: new Request("http://node/", { method: "POST", body }), sha256: hash.digest("hex") };
}

describe("spoolBody", () => {
  test("a chunked body lands in a private file with its size and SHA-256", async () => {
    const { req, sha256 } = chunked(40, 65_536);
    const spooled = await spoolBody(req, dir, 10 << 20);
    expect(spooled.bytes).toBe(40 * 65_536);
    expect(spooled.sha256).toBe(sha256);
    expect(createHash("sha256").update(readFileSync(spooled.file)).digest("hex")).toBe(sha256);
    expect(statSync(spooled.file).mode & 0o777).toBe(0o600);
    await spooled.remove();
    expect(readdirSync(dir)).toEqual([]);
  });

  test("a chunked body past the limit is refused as it arrives and leaves no file", async () => {
    const { req } = chunked(200, 65_536);
    const err = await spoolBody(req, dir, 1 << 20).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2prcError);
    expect((err as P2prcError).code).toBe("E_TOO_LARGE");
    expect((err as P2prcError).field).toBe("body");
    // the abandoned write ends with its source; its file is removed then too
    for (let i = 0; i < 200 && readdirSync(dir).length > 0; i++) await Bun.sleep(10);
    expect(readdirSync(dir)).toEqual([]);
  });

  test("bodies with a declared length, served over HTTP: each hash is the hash of what was sent", async () => {
    // Bun may size the file ahead for a declared length: a hash read while it is written saw zeros
    const results: boolean[] = [];
    using server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      async fetch(req) {
        const s = await spoolBody(req, dir, 4 << 20);
        const real = createHash("sha256").update(readFileSync(s.file)).digest("hex");
        await s.remove();
        return Response.json({ same: real === s.sha256, sent: req.headers.get("x-sha") === s.sha256 });
      },
    });
    for (let i = 0; i < 60; i++) {
      const body = Uint8Array.from({ length: 1 << 20 }, (_, k) => (k * 7 + i) % 256);
      const sha = createHash("sha256").update(body).digest("hex");
      const res = await fetch(`http://127.0.0.1:${server.port}/`, {
        method: "PUT",
        body,
        headers: { "x-sha": sha },
      });
      const r = (await res.json()) as { same: boolean; sent: boolean };
      results.push(r.same && r.sent);
    }
    expect(results.filter((ok) => !ok).length).toBe(0);
  });

  test("a declared length past the limit is refused before anything is written", async () => {
    const req = new Request("http://node/", {
      method: "POST",
      body: "x".repeat(100),
      headers: { "content-length": "100" },
    });
    const err = await spoolBody(req, dir, 10).catch((e: unknown) => e);
    expect((err as P2prcError).code).toBe("E_TOO_LARGE");
    expect(readdirSync(dir)).toEqual([]);
  });
});
