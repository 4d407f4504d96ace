import { describe, expect, test } from "bun:test";
import { checkClosures, closureHint, freeNames } from "./closures.ts";

describe("closures", () => {
  test("names a function reads without declaring them", async () => {
    expect(await freeNames("(x) => x * k + y.z")).toEqual(["k", "y"]);
    const own = `async function f(a, ...rest) {
      const { b: c, d = 2 } = a; let [e] = rest; var g;
      const o = { q: c, k2: 1, m() { return 1 } };
      lbl: for (const i of rest) { if (i) break lbl; }
      class K { p = 1; get v() { return 2 } }
      try { g = f.length } catch (err) { g = err }
      return Math.max(c, d, e, o.q, new K().p) + g;
    }`;
    expect(await freeNames(own)).toEqual(["Math"]);
    expect(await freeNames("({ x }) => ({ x, y: x?.w })")).toEqual([]);
  });

  test("a closure over a local is refused with the name and a hint; globals and allowed imports pass", async () => {
    const err = await checkClosures("(x) => x * factor + offset", []).catch((e) => e);
    expect(err.code).toBe("E_INVALID");
    expect(err.message).toContain("fn uses `factor`, `offset` from outside the function");
    expect(err.hint).toContain("cluster.future(fn, [factor, offset])");
    await checkClosures(
      "() => [Math.PI, JSON.stringify(new Map()), Bun.version, crypto.randomUUID(), require('node:os')]",
      [],
    );
    await checkClosures("(s) => zlib.gzipSync(s)", ["zlib"]);
  });

  test("the node's ReferenceError reads as the same rule", () => {
    expect(closureHint("ReferenceError", "factor is not defined")).toContain(
      "`factor` is not defined on the node",
    );
    expect(closureHint("TypeError", "factor is not defined")).toBeUndefined();
  });
});
