import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PNG } from "pngjs";
import { P2prcError } from "../../core/index.ts";
import type { Job } from "../batch/job.ts";

export interface MandelbrotOptions {
  width: number;
  height: number;
  tiles: number;
  maxIter: number;
  image: string;
}

// One horizontal band of rows per task, computed by awk (busybox's awk is enough). The arithmetic is
// written in the same order as `iterations` below, so the image equals the local reference exactly.
const AWK = `BEGIN {
  W = ENVIRON["W"] + 0; H = ENVIRON["H"] + 0; T = ENVIRON["TILES"] + 0; M = ENVIRON["MAXITER"] + 0
  i = ENVIRON["P2PRC_TASK_INDEX"] + 0
  y0 = int(i * H / T); y1 = int((i + 1) * H / T)
  for (y = y0; y < y1; y++) {
    line = ""
    for (x = 0; x < W; x++) {
      cx = -2.5 + 3.5 * x / W; cy = -1.25 + 2.5 * y / H
      zx = 0; zy = 0; n = 0
      while (n < M && zx * zx + zy * zy <= 4) { t = zx * zx - zy * zy + cx; zy = 2 * zx * zy + cy; zx = t; n++ }
      line = line (x ? " " : "") n
    }
    print line
  }
}`;

/** The batch job: one task per tile. */
export function mandelbrotJob(o: MandelbrotOptions): Job {
  return {
    image: o.image,
    command: ["awk", AWK],
    tasks: o.tiles,
    env: { W: String(o.width), H: String(o.height), TILES: String(o.tiles), MAXITER: String(o.maxIter) },
    timeoutSeconds: 600,
    retries: 2,
    retryOnFailure: false,
    freshContainer: false,
    maxPerNode: 4,
  };
}

/** Rows of tile `i`. */
export function tileRows(o: MandelbrotOptions, i: number): [number, number] {
  return [Math.floor((i * o.height) / o.tiles), Math.floor(((i + 1) * o.height) / o.tiles)];
}

/** Escape iterations of one pixel, in the awk script's order of operations. */
function iterations(x: number, y: number, o: MandelbrotOptions): number {
  const cx = -2.5 + (3.5 * x) / o.width;
  const cy = -1.25 + (2.5 * y) / o.height;
  let zx = 0;
  let zy = 0;
  let n = 0;
  while (n < o.maxIter && zx * zx + zy * zy <= 4) {
    const t = zx * zx - zy * zy + cx;
    zy = 2 * zx * zy + cy;
    zx = t;
    n++;
  }
  return n;
}

/** The whole image computed here (the reference the network's result must equal). */
export function mandelbrotLocal(o: MandelbrotOptions): Uint16Array {
  const out = new Uint16Array(o.width * o.height);
  for (let y = 0; y < o.height; y++)
    for (let x = 0; x < o.width; x++) out[y * o.width + x] = iterations(x, y, o);
  return out;
}

/** Reads the tiles' stdout files from a batch's out dir into one iteration map. */
export function assembleTiles(outDir: string, o: MandelbrotOptions): Uint16Array {
  const out = new Uint16Array(o.width * o.height);
  for (let i = 0; i < o.tiles; i++) {
    const [y0, y1] = tileRows(o, i);
    if (y1 === y0) continue; // more tiles than rows: this one is empty
    const lines = readFileSync(join(outDir, String(i), "stdout"), "utf8")
      .trimEnd()
      .split("\n");
    if (y1 > y0 && lines.length !== y1 - y0) {
      throw new P2prcError("E_INVALID", `tile ${i}: expected ${y1 - y0} rows, got ${lines.length}`);
    }
    lines.forEach((line, r) => {
      const values = line.trim().split(" ").map(Number);
      if (values.length !== o.width)
        throw new P2prcError("E_INVALID", `tile ${i} row ${r}: expected ${o.width} values`);
      out.set(values, (y0 + r) * o.width);
    });
  }
  return out;
}

/** Iterations → a grayscale PNG (points in the set are black). */
export function toPng(iters: Uint16Array, o: MandelbrotOptions): Uint8Array {
  const png = new PNG({ width: o.width, height: o.height });
  for (let p = 0; p < iters.length; p++) {
    const n = iters[p] as number;
    const v = n >= o.maxIter ? 0 : Math.round(255 * Math.sqrt(n / o.maxIter));
    png.data[p * 4] = v;
    png.data[p * 4 + 1] = v;
    png.data[p * 4 + 2] = Math.min(255, v + 40 * (n < o.maxIter ? 1 : 0));
    png.data[p * 4 + 3] = 255;
  }
  return new Uint8Array(PNG.sync.write(png));
}
