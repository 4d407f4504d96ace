import { describe, expect, test } from "bun:test";
import { isP2prcError } from "../../core/index.ts";
import { demuxToWeb, FrameDemuxer } from "./demux.ts";

const frame = (stream: number, text: string) => {
  const body = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + body.length);
  out[0] = stream;
  new DataView(out.buffer).setUint32(4, body.length);
  out.set(body, 8);
  return out;
};
const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const text = (pieces: { data: Uint8Array }[]) => new TextDecoder().decode(concat(pieces.map((p) => p.data)));

async function* chunksOf(buf: Uint8Array, size: number) {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

describe("FrameDemuxer", () => {
  const wire = concat([frame(1, "out one\n"), frame(2, "err\n"), frame(1, ""), frame(1, "out two\n")]);

  test("splits frames whatever the chunk boundaries (every size from 1 byte to all)", () => {
    for (let size = 1; size <= wire.length; size++) {
      const d = new FrameDemuxer();
      const pieces = [];
      for (let i = 0; i < wire.length; i += size) pieces.push(...d.push(wire.subarray(i, i + size)));
      expect(text(pieces)).toBe("out one\nerr\nout two\n");
      expect(text(pieces.filter((p) => p.stream === 2))).toBe("err\n");
      expect(d.partial).toBe(false);
    }
  });

  test("a header that is not a frame is E_ENGINE (garbage from the engine)", () => {
    const d = new FrameDemuxer();
    let err: unknown;
    try {
      d.push(new TextEncoder().encode("HTTP garbage here"));
    } catch (e) {
      err = e;
    }
    expect(isP2prcError(err) && err.code).toBe("E_ENGINE");
  });

  test("memory: a 20 MB log in 64 KiB chunks keeps no more than a chunk (no per-frame copy)", () => {
    const line = frame(1, `${"x".repeat(99)}\n`);
    const lines = 200_000;
    const big = new Uint8Array(line.length * lines);
    for (let i = 0; i < lines; i++) big.set(line, i * line.length);
    const d = new FrameDemuxer();
    let bytes = 0;
    const started = performance.now();
    for (let i = 0; i < big.length; i += 65536)
      for (const p of d.push(big.subarray(i, i + 65536))) bytes += p.data.length;
    expect(bytes).toBe(lines * 100);
    // docker-modem's demuxer, fed this in one chunk, copied the rest for every frame (minutes, GBs)
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe("demuxToWeb", () => {
  const wire = concat(Array.from({ length: 1000 }, (_, i) => frame(1 + (i % 2), `line ${i}\n`)));

  test("streams every payload byte in order", async () => {
    let closed = 0;
    const body = await new Response(demuxToWeb(chunksOf(wire, 333), { close: () => closed++ })).text();
    expect(body.split("\n").length - 1).toBe(1000);
    expect(body.startsWith("line 0\nline 1\n")).toBe(true);
    expect(closed).toBe(1);
  });

  test("maxBytes ends the stream there and closes the source", async () => {
    let closed = 0;
    const body = await new Response(
      demuxToWeb(chunksOf(wire, 50), { maxBytes: 20, close: () => closed++ }),
    ).text();
    expect(body).toBe("line 0\nline 1\nline 2");
    expect(closed).toBe(1);
  });

  test("an engine that goes silent fails the stream after idleMs", async () => {
    async function* silent() {
      yield frame(1, "first\n");
      await new Promise(() => undefined);
    }
    let closed = 0;
    const reader = demuxToWeb(silent(), { idleMs: 100, close: () => closed++ }).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("first\n");
    const started = performance.now();
    const err = await reader.read().catch((e: unknown) => e);
    expect(isP2prcError(err) && err.code).toBe("E_ENGINE_UNAVAILABLE");
    expect(performance.now() - started).toBeLessThan(1000);
    expect(closed).toBe(1);
  });
});
