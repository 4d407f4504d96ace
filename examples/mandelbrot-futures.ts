// The Mandelbrot demo with futures: one future per tile (a band of rows) on the caller's cluster, each
// returning its iteration counts as a Uint16Array (a structured clone: typed arrays travel as they are); the
// PNG is assembled here. The batch version (`p2prc demo mandelbrot`) runs awk in busybox; this one runs the
// TypeScript function below on every node.
// Run: P2PRC=<your home> bun examples/mandelbrot-futures.ts [--tiles 8] [--size 400x300] [--max-iter 200]
//        [--out mandelbrot-futures.png] [--nodes auto|<node>,<node>]
// Prints one JSON line: the PNG written, its size, and the tiles each node computed.
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { PNG } from "pngjs";
import { cluster } from "../abstractions/index.ts";

const { values } = parseArgs({
  options: {
    tiles: { type: "string", default: "8" },
    size: { type: "string", default: "400x300" },
    "max-iter": { type: "string", default: "200" },
    out: { type: "string", default: "mandelbrot-futures.png" },
    nodes: { type: "string", default: "auto" },
  },
});
const tiles = Number(values.tiles);
const [width, height] = (values.size ?? "").split("x").map(Number) as [number, number];
const maxIter = Number(values["max-iter"]);

/**
 * One tile: rows y0..y1 of the image, as escape iterations. Runs on a node: it uses only its arguments
 * and the runtime's globals (a closure over a variable here would be refused before sending).
 */
function tile(y0: number, y1: number, width: number, height: number, maxIter: number): Uint16Array {
  const out = new Uint16Array((y1 - y0) * width);
  for (let y = y0; y < y1; y++)
    for (let x = 0; x < width; x++) {
      const cx = -2.5 + (3.5 * x) / width;
      const cy = -1.25 + (2.5 * y) / height;
      let zx = 0;
      let zy = 0;
      let n = 0;
      while (n < maxIter && zx * zx + zy * zy <= 4) {
        const t = zx * zx - zy * zy + cx;
        zy = 2 * zx * zy + cy;
        zx = t;
        n++;
      }
      out[(y - y0) * width + x] = n;
    }
  return out;
}

const c = await cluster({ nodes: (values.nodes ?? "auto").split(","), cpus: 1, memoryMb: 256 });
try {
  const t0 = performance.now();
  const rows = Array.from({ length: tiles }, (_, i) => [
    Math.floor((i * height) / tiles),
    Math.floor(((i + 1) * height) / tiles),
  ]);
  const futures = rows.map(([y0, y1]) =>
    c.future(tile, [y0 as number, y1 as number, width, height, maxIter]),
  );
  const iters = new Uint16Array(width * height);
  const perNode: Record<string, number> = {};
  for (const [i, f] of futures.entries()) {
    iters.set(await f.value(), (rows[i]?.[0] ?? 0) * width);
    perNode[f.node ?? "?"] = (perNode[f.node ?? "?"] ?? 0) + 1;
  }
  const png = new PNG({ width, height });
  iters.forEach((n, p) => {
    const v = n >= maxIter ? 0 : Math.round(255 * Math.sqrt(n / maxIter));
    png.data.set([v, v, Math.min(255, v + (n < maxIter ? 40 : 0)), 255], p * 4);
  });
  const out = resolve(values.out ?? "mandelbrot-futures.png");
  writeFileSync(out, PNG.sync.write(png));
  const ms = Math.round(performance.now() - t0);
  console.log(JSON.stringify({ out, width, height, tiles, perNode, ms }));
} finally {
  await c.close();
}
