// Memory of a real node process while large bodies arrive: unsigned 100 MiB POSTs (refused before
// anything is read), uploads of 120 and 200 MiB (spooled to disk and streamed to the engine), one over
// the 256 MiB limit (413). A watchdog kills the node if its RSS passes 1.5 GiB, so a regression fails
// this test instead of the machine. Figures are printed for Docs/Security.md.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { generateIdentity, type Identity, signRequest, signRequestHash } from "../core/index.ts";
import { nodeIdentity, rssBytes, signedFetch, spawnNode } from "./support.ts";

const MiB = 1024 * 1024;
const RSS_KILL = 1536 * MiB;
const root = mkdtempSync(join(tmpdir(), "p2prc-bodies-"));
const home = join(root, "node");
const procs: Subprocess[] = [];
let proc: Subprocess;
let base = "";
let key: Identity;
let containerId = "";
let peak = 0;
let watchdog: ReturnType<typeof setInterval> | undefined;

const rss = () => rssBytes(proc.pid);
const mib = (n: number) => `${Math.round(n / MiB)} MiB`;

beforeAll(async () => {
  key = nodeIdentity(home);
  ({ proc, url: base } = await spawnNode({ home, procs }));
  watchdog = setInterval(() => {
    if (proc.exitCode !== null) return;
    const now = rss();
    peak = Math.max(peak, now);
    if (now > RSS_KILL) proc.kill(9);
  }, 20);
  const made = await signedFetch(key, `${base}/v1/containers`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ command: ["sleep", "300"] }),
  });
  expect(made.status).toBe(201);
  containerId = ((await made.json()) as { id: string }).id;
}, 30_000);

afterAll(async () => {
  clearInterval(watchdog);
  if (containerId && proc.exitCode === null)
    await signedFetch(key, `${base}/v1/containers/${containerId}`, { method: "DELETE" });
  for (const p of procs) if (p.exitCode === null) p.kill(9);
  rmSync(root, { recursive: true, force: true });
});

/** `size` bytes of zeros in 1 MiB chunks, generated as they are sent (the test holds none of it). */
function zeros(size: number): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(MiB);
  let left = size;
  return new ReadableStream({
    pull(controller) {
      if (left <= 0) return controller.close();
      const n = Math.min(left, MiB);
      controller.enqueue(n === MiB ? chunk.slice() : chunk.subarray(0, n).slice());
      left -= n;
    },
  });
}

/** A tar with one file of `size` zero bytes: header, data, padding, end blocks. */
function tarOfZeros(size: number): {
  length: number;
  sha256: string;
  stream: () => ReadableStream<Uint8Array>;
} {
  const header = new Uint8Array(512);
  const enc = new TextEncoder();
  const put = (at: number, text: string) => header.set(enc.encode(text), at);
  put(0, "big.bin");
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, `${size.toString(8).padStart(11, "0")}\0`);
  put(136, "00000000000\0");
  put(148, "        ");
  put(156, "0");
  put(257, "ustar\0");
  put(263, "00");
  put(
    148,
    `${header
      .reduce((a, b) => a + b, 0)
      .toString(8)
      .padStart(6, "0")}\0 `,
  );
  const tail = Math.ceil(size / 512) * 512 - size + 1024;
  const hash = createHash("sha256").update(header);
  const mb = new Uint8Array(MiB);
  for (let left = size; left > 0; left -= MiB) hash.update(left >= MiB ? mb : mb.subarray(0, left));
  hash.update(new Uint8Array(tail));
  const length = 512 + size + tail;
  const stream = () => {
    const body = zeros(size).getReader();
    let stage = 0;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (stage === 0) {
          stage = 1;
          return controller.enqueue(header.slice());
        }
        if (stage === 1) {
          const { done, value } = await body.read();
          if (!done) return controller.enqueue(value);
          stage = 2;
          return controller.enqueue(new Uint8Array(tail));
        }
        controller.close();
      },
    });
  };
  return { length, sha256: hash.digest("hex"), stream };
}

async function upload(size: number) {
  const tar = tarOfZeros(size);
  const url = `${base}/v1/containers/${containerId}/files?path=/tmp`;
  const headers = { ...signRequestHash(key, "PUT", url, tar.sha256), "content-length": String(tar.length) };
  const before = rss();
  peak = before;
  const res = await fetch(url, {
    method: "PUT",
    headers,
    body: tar.stream(),
    signal: AbortSignal.timeout(120_000),
  });
  const text = await res.text();
  return { status: res.status, text, before, peak };
}

describe("node memory while large bodies arrive", () => {
  test("eight unsigned 100 MiB POSTs: each 401, RSS stays flat", async () => {
    const before = rss();
    peak = before;
    const outsider = generateIdentity();
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        fetch(`${base}/v1/containers`, {
          method: "POST",
          headers: {
            "content-length": String(100 * MiB),
            ...(i % 2 ? signRequest(outsider, "POST", `${base}/v1/containers`, "") : {}),
          },
          body: zeros(100 * MiB),
          signal: AbortSignal.timeout(60_000),
        }).then(
          (r) => r.status,
          (err: Error) => err.message,
        ),
      ),
    );
    console.log(`8 x 100 MiB unsigned/outsider POSTs: RSS ${mib(before)} -> peak ${mib(peak)}`);
    expect(results).toEqual([401, 403, 401, 403, 401, 403, 401, 403]);
    expect(peak - before).toBeLessThan(64 * MiB);
  }, 90_000);

  test("a 120 MiB and a 200 MiB upload succeed with RSS bounded; 300 MiB is 413", async () => {
    for (const size of [120 * MiB, 200 * MiB]) {
      const r = await upload(size);
      console.log(`upload ${mib(size)}: ${r.status}, RSS ${mib(r.before)} -> peak ${mib(r.peak)}`);
      expect(`${r.status} ${r.text}`).toBe(`200 ${JSON.stringify({ uploaded: "/tmp", bytes: size + 1536 })}`);
      expect(r.peak - r.before).toBeLessThan(96 * MiB);
    }
    const ls = await signedFetch(key, `${base}/v1/containers/${containerId}/exec`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ command: ["stat", "-c", "%s", "/tmp/big.bin"] }),
    });
    expect(((await ls.json()) as { stdout: string }).stdout.trim()).toBe(String(200 * MiB));
    const over = await upload(300 * MiB);
    console.log(`upload 300 MiB: ${over.status} ${over.text}`);
    expect(over.status).toBe(413);
    expect(JSON.parse(over.text).error.code).toBe("E_TOO_LARGE");
  }, 240_000);
});
