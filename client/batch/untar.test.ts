import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTar } from "nanotar";
import { P2prcError } from "../../core/index.ts";
import { ustarHeader } from "../../server/tar.ts";
import { extractTar } from "./untar.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-untar-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** `bytes` as a stream of `size`-byte chunks (archive boundaries fall anywhere). */
function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

/** A PAX extended header naming the next entry `path`. */
function pax(path: string): Uint8Array {
  let rec = ` path=${path}\n`;
  rec = `${rec.length + String(rec.length).length}${rec}`;
  const body = new TextEncoder().encode(rec);
  const header = ustarHeader({ path: "PaxHeader", mode: 0o644, type: "0", size: body.length });
  header[156] = "x".charCodeAt(0);
  let sum = 0;
  header.fill(32, 148, 156);
  for (const b of header) sum += b;
  header.set(new TextEncoder().encode(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
  const padded = new Uint8Array(Math.ceil(body.length / 512) * 512);
  padded.set(body);
  return new Uint8Array([...header, ...padded]);
}

describe("extractTar", () => {
  test("files and directories arrive whole whatever the chunking; a PAX long name is honoured", async () => {
    const big = new Uint8Array(300_000).map((_, i) => i % 251);
    const long = `out/${"d".repeat(120)}/f.txt`;
    const tar = createTar([
      { name: "out/", attrs: { mode: "755" } },
      { name: "out/a.txt", data: "hello\n" },
      { name: "out/big.bin", data: big },
    ]);
    // nanotar pads to a 10 KiB record: the entries end after "out/", a.txt and big.bin's blocks
    const entriesEnd = 512 + (512 + 512) + (512 + Math.ceil(big.length / 512) * 512);
    const withPax = new Uint8Array([
      ...tar.subarray(0, entriesEnd),
      ...pax(long),
      ...ustarHeader({ path: "ignored-short-name", mode: 0o644, type: "0", size: 3 }),
      ...new TextEncoder().encode("pax"),
      ...new Uint8Array(509),
      ...new Uint8Array(1024),
    ]);
    for (const size of [3, 512, 65536]) {
      const dir = join(root, `t${n++}`);
      const files = await extractTar(chunked(withPax, size), dir);
      expect(files.map((f) => f.slice(dir.length + 1))).toEqual(["out/a.txt", "out/big.bin", long]);
      expect(readFileSync(join(dir, "out/a.txt"), "utf8")).toBe("hello\n");
      expect(new Uint8Array(readFileSync(join(dir, "out/big.bin")))).toEqual(big);
      expect(readFileSync(join(dir, long), "utf8")).toBe("pax");
    }
  });

  test("a name climbing out is skipped; a cut-off archive fails, retryable", async () => {
    const dir = join(root, `t${n++}`);
    const tar = createTar([
      { name: "../../escape.txt", data: "x" },
      { name: "ok.txt", data: "fine" },
    ]);
    await extractTar(chunked(tar, 100), dir);
    expect(existsSync(join(root, "escape.txt"))).toBe(false);
    expect(readFileSync(join(dir, "ok.txt"), "utf8")).toBe("fine");
    const cut = createTar([{ name: "f.bin", data: new Uint8Array(5000) }]).subarray(0, 2048);
    const err = await extractTar(chunked(cut, 512), join(root, `t${n++}`)).catch((e) => e);
    expect(err).toBeInstanceOf(P2prcError);
    expect((err as P2prcError).retryable).toBe(true);
  });
});
