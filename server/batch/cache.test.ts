import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memoryLogger, P2prcError } from "../../core/index.ts";
import { InputCache, type SpooledFile } from "./cache.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-inputs-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const sha = (b: string | Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A spooled upload of `content` (as the auth middleware leaves it: its real SHA-256 computed). */
function spool(content: string): SpooledFile {
  const file = join(root, `spool-${n++}`);
  writeFileSync(file, content);
  return { file, bytes: Buffer.byteLength(content), sha256: sha(content) };
}

const cache = (limitBytes = 1000, dir = join(root, `cache-${n++}`)) =>
  new InputCache({ dir, limitBytes, logger: memoryLogger() });

const codeOf = async (p: Promise<unknown> | (() => unknown)) => {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (err) {
    return err instanceof P2prcError ? [err.code, err.field] : [String(err)];
  }
  return ["no error"];
};

describe("InputCache", () => {
  test("a member lacks what it has not uploaded; an upload is kept by its digest and counted", async () => {
    const c = cache();
    const d = sha("hello");
    expect(c.missing("alice", [d])).toEqual([d]);
    expect(await c.add("alice", d, spool("hello"))).toEqual({ bytes: 5, stored: true });
    expect(c.missing("alice", [d])).toEqual([]);
    const used = c.use("alice", [d, d]);
    expect(readFileSync(used.files.get(d)?.path as string, "utf8")).toBe("hello");
    used.release();
    expect(c.stats()).toMatchObject({ blobs: 1, bytes: 5, bytesReceived: 5, bytesServed: 10, refused: 0 });
  });

  test("another member must upload it too (nothing is learnt from a digest), and the bytes are kept once", async () => {
    const dir = join(root, "shared");
    const c = cache(1000, dir);
    const d = sha("secret");
    await c.add("alice", d, spool("secret"));
    expect(c.missing("bob", [d])).toEqual([d]);
    expect(await codeOf(() => c.use("bob", [d]))).toEqual(["E_NOT_FOUND", "inputs"]);
    expect(await c.add("bob", d, spool("secret"))).toEqual({ bytes: 6, stored: false });
    expect(c.missing("bob", [d])).toEqual([]);
    expect(readdirSync(dir)).toEqual([d]);
  });

  test("a corrupted upload (content not matching its digest) is refused and leaves nothing", async () => {
    const dir = join(root, "corrupt");
    const c = cache(1000, dir);
    const d = sha("the real content");
    const bad = spool("the real c0ntent");
    expect(await codeOf(c.add("alice", d, bad))).toEqual(["E_INVALID", "body"]);
    expect(readdirSync(dir)).toEqual([]);
    expect(c.missing("alice", [d])).toEqual([d]);
    expect(c.stats()).toMatchObject({ blobs: 0, bytes: 0, bytesReceived: 0, refused: 1 });
  });

  test("an input larger than the whole cache is refused (413)", async () => {
    const c = cache(4);
    expect(await codeOf(c.add("alice", sha("hello"), spool("hello")))).toEqual(["E_TOO_LARGE", "body"]);
  });

  test("over the limit the least recently used go first; a pinned one stays until released", async () => {
    const dir = join(root, "lru");
    const c = cache(10, dir);
    const [a, b, x] = ["aaaa", "bbbb", "xxxx"];
    await c.add("m", sha(a), spool(a));
    await c.add("m", sha(b), spool(b));
    c.use("m", [sha(a)]).release(); // a is now more recent than b
    await c.add("m", sha(x), spool(x)); // 12 > 10: b goes
    expect(c.missing("m", [sha(a), sha(b), sha(x)])).toEqual([sha(b)]);
    expect(existsSync(join(dir, sha(b)))).toBe(false);
    const pin = c.use("m", [sha(a)]);
    c.use("m", [sha(x)]).release(); // a is least recent, but pinned
    await c.add("m", sha(b), spool(b));
    expect(c.missing("m", [sha(a), sha(b), sha(x)])).toEqual([sha(x)]);
    pin.release();
    expect(c.stats()).toMatchObject({ blobs: 2, bytes: 8, evictions: 2 });
  });

  test("a restarted node keeps its files (each member uploads once more) and drops leftovers", async () => {
    const dir = join(root, "restart");
    const c = cache(1000, dir);
    await c.add("m", sha("kept"), spool("kept"));
    writeFileSync(join(dir, `${sha("kept")}.part`), "cut off");
    const again = cache(1000, dir);
    expect(again.stats()).toMatchObject({ blobs: 1, bytes: 4 });
    expect(readdirSync(dir)).toEqual([sha("kept")]);
    expect(again.missing("m", [sha("kept")])).toEqual([sha("kept")]);
  });
});
