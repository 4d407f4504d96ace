// The Mandelbrot demo without a network: tiles cut the rows, and tile outputs assemble back into
// exactly the local computation (also when there are more tiles than rows).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PNG } from "pngjs";
import { P2prcError } from "../../core/index.ts";
import {
  assembleTiles,
  type MandelbrotOptions,
  mandelbrotJob,
  mandelbrotLocal,
  tileRows,
  toPng,
} from "./mandelbrot.ts";

const dir = mkdtempSync(join(tmpdir(), "p2prc-mandel-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const opts = (over: Partial<MandelbrotOptions> = {}): MandelbrotOptions => ({
  width: 24,
  height: 10,
  tiles: 4,
  maxIter: 50,
  image: "p2prc-test/busybox",
  ...over,
});

/** Writes what the awk tasks print for every tile: the tile's rows, space-separated, one per line. */
function writeTiles(o: MandelbrotOptions, name: string): string {
  const all = mandelbrotLocal(o);
  const out = join(dir, name);
  for (let i = 0; i < o.tiles; i++) {
    const [y0, y1] = tileRows(o, i);
    const lines: string[] = [];
    for (let y = y0; y < y1; y++) lines.push(Array.from(all.slice(y * o.width, (y + 1) * o.width)).join(" "));
    mkdirSync(join(out, String(i)), { recursive: true });
    writeFileSync(join(out, String(i), "stdout"), lines.map((l) => `${l}\n`).join(""));
  }
  return out;
}

describe("tiles", () => {
  test("tileRows cover every row exactly once, in order", () => {
    for (const o of [opts(), opts({ tiles: 3, height: 80 }), opts({ tiles: 7, height: 5 })]) {
      const rows: number[] = [];
      for (let i = 0; i < o.tiles; i++) {
        const [y0, y1] = tileRows(o, i);
        for (let y = y0; y < y1; y++) rows.push(y);
      }
      expect(rows).toEqual(Array.from({ length: o.height }, (_, y) => y));
    }
  });

  test("the job has one task per tile and passes the size to the tasks", () => {
    const job = mandelbrotJob(opts({ tiles: 6, width: 120, height: 80, maxIter: 200 }));
    expect(job.tasks).toBe(6);
    expect(job.image).toBe("p2prc-test/busybox");
    expect(job.env).toMatchObject({ W: "120", H: "80", TILES: "6", MAXITER: "200" });
  });

  test("assembled tiles equal the local computation", () => {
    const o = opts();
    expect(assembleTiles(writeTiles(o, "even"), o)).toEqual(mandelbrotLocal(o));
  });

  test("more tiles than rows: the empty tiles print nothing and the image still assembles", () => {
    const o = opts({ tiles: 7, height: 3 });
    const out = writeTiles(o, "sparse");
    expect(assembleTiles(out, o)).toEqual(mandelbrotLocal(o));
  });

  test("a tile with the wrong number of rows or values is refused", () => {
    const o = opts();
    const out = writeTiles(o, "broken");
    writeFileSync(join(out, "1", "stdout"), "1 2 3\n");
    expect(() => assembleTiles(out, o)).toThrow(P2prcError);
  });

  test("toPng: a PNG of the right size, points in the set black", () => {
    const o = opts();
    const iters = mandelbrotLocal(o);
    const png = PNG.sync.read(Buffer.from(toPng(iters, o)));
    expect([png.width, png.height]).toEqual([o.width, o.height]);
    const inside = iters.findIndex((n) => n >= o.maxIter);
    expect(inside).toBeGreaterThanOrEqual(0);
    expect(Array.from(png.data.slice(inside * 4, inside * 4 + 4))).toEqual([0, 0, 0, 255]);
  });
});
