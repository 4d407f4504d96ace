// A member's container prints a lot; reading its logs (and its exec output) must not grow the node's
// memory with the size of the output. Issue 19, finding 1: a 1 MB log once took the node past 1.5 GB
// (the whole log went to docker-modem's demuxer in one buffer, which copied the rest for every frame).
// The node runs as its own process; a guard polls its RSS from /proc and kills it past a bound, so a
// regression fails this test instead of exhausting the machine.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import type { Identity } from "../core/index.ts";
import { nodeIdentity, rssBytes, signedFetch, spawnNode, waitFor } from "./support.ts";

const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const root = mkdtempSync(join(tmpdir(), "p2prc-logs-memory-"));
const MiB = 1024 * 1024;
/** The guard kills the node when its RSS grows this much over its idle RSS. */
const KILL_GROWTH = 400 * MiB;
/** What reading (or exec'ing) 10 MB of output may add to the node's RSS at its peak. */
const MAX_GROWTH = 64 * MiB;
const LINE = `${"x".repeat(99)}\n`; // 100 bytes
const SIZES = [
  { label: "100 kB", lines: 1_000 },
  { label: "1 MB", lines: 10_000 },
  { label: "10 MB", lines: 100_000 },
];

const procs: Subprocess[] = [];
let proc: Subprocess;
let url: string;
let nodeId: string;
let self: Identity;

/** Runs `fn` while polling the node's RSS every 20 ms; the peak growth over `base`, killing the node past KILL_GROWTH. */
async function peakDuring<T>(fn: () => Promise<T>): Promise<{ result: T; base: number; peak: number }> {
  Bun.gc(true);
  await Bun.sleep(200);
  const base = rssBytes(proc.pid);
  let peak = base;
  let killed = false;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(proc.pid));
    } catch {
      return;
    }
    if (peak - base > KILL_GROWTH && !killed) {
      killed = true;
      proc.kill(9);
    }
  }, 20);
  let result: T;
  try {
    result = await fn();
    peak = Math.max(peak, rssBytes(proc.pid));
  } catch (err) {
    throw killed ? new Error(`node killed: RSS grew past ${KILL_GROWTH / MiB} MiB (${err})`) : err;
  } finally {
    clearInterval(timer);
  }
  if (killed) throw new Error(`node killed: RSS grew by ${((peak - base) / MiB).toFixed(0)} MiB`);
  return { result, base, peak };
}

async function api(method: string, path: string, body?: unknown) {
  const res = await signedFetch(self, `${url}${path}`, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: body === undefined ? undefined : { "content-type": "application/json" },
  });
  return res;
}

beforeAll(async () => {
  const home = join(root, "node");
  ({ proc, url, nodeId } = await spawnNode({ home, procs, env: { P2PRC_DEFAULT_CPUS: "0.5" } }));
  self = nodeIdentity(home);
}, 30_000);

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill(9);
  const mine = await docker.listContainers({ all: true, filters: { label: [`p2prc.node=${nodeId}`] } });
  for (const c of mine) await docker.getContainer(c.Id).remove({ force: true });
  rmSync(root, { recursive: true, force: true });
});

describe("logs and exec stay bounded in memory", () => {
  const ids = new Map<string, string>();

  beforeAll(async () => {
    for (const { label, lines } of SIZES) {
      const res = await api("POST", "/v1/containers", {
        command: ["sh", "-c", `yes '${LINE.trimEnd()}' | head -n ${lines}; echo done; exec sleep 3600`],
        ttlSeconds: 600,
      });
      expect(res.status).toBe(201);
      ids.set(label, ((await res.json()) as { id: string }).id);
    }
    // the engine's own log of each container is complete once it holds the last line, "done" (on stdout: the engine does not keep stdout and stderr in order)
    for (const { label } of SIZES) {
      const id = ids.get(label) as string;
      await waitFor(
        `${label} of logs written`,
        async () => {
          const buf = await docker.getContainer(id).logs({ stdout: true, stderr: true, tail: 1 });
          const last = Buffer.from(buf);
          return last.subarray(8).toString() === "done\n" ? true : undefined;
        },
        30_000,
        200,
      );
    }
  }, 90_000);

  for (const { label, lines } of SIZES) {
    test(`GET logs of ${label} (${lines} lines): complete, RSS growth < ${MAX_GROWTH / MiB} MiB`, async () => {
      const id = ids.get(label) as string;
      const { result, base, peak } = await peakDuring(async () => {
        const res = await api("GET", `/v1/containers/${id}/logs`);
        expect(res.status).toBe(200);
        // counted as it streams, not kept: the test must not be the one that holds the log
        let bytes = 0;
        let newlines = 0;
        let wrong = 0;
        let carry = "";
        const decoder = new TextDecoder();
        for await (const chunk of res.body as ReadableStream<Uint8Array>) {
          bytes += chunk.length;
          const text = carry + decoder.decode(chunk, { stream: true });
          const parts = text.split("\n");
          carry = parts.pop() ?? "";
          newlines += parts.length;
          for (const p of parts)
            if (p !== LINE.trimEnd() && !(p === "done" && newlines === lines + 1)) wrong++;
        }
        return { bytes, newlines, wrong, carry };
      });
      const growth = (peak - base) / MiB;
      console.log(
        `logs ${label}: node RSS ${(base / MiB).toFixed(0)} -> peak ${(peak / MiB).toFixed(0)} MiB (+${growth.toFixed(1)})`,
      );
      // every line, in order, then "done"
      expect(result).toEqual({ bytes: lines * LINE.length + 5, newlines: lines + 1, wrong: 0, carry: "" });
      expect(peak - base).toBeLessThan(MAX_GROWTH);
    }, 60_000);
  }

  test("exec printing 1 MB: every line comes back", async () => {
    const id = ids.get("100 kB") as string;
    const res = await api("POST", `/v1/containers/${id}/exec`, {
      command: ["sh", "-c", `yes '${LINE.trimEnd()}' | head -n 10000`],
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { exitCode: number; stdout: string; truncated?: boolean };
    expect(body.exitCode).toBe(0);
    expect(body.truncated).toBeUndefined();
    expect(body.stdout).toBe(LINE.repeat(10_000));
  }, 60_000);

  test("exec printing 10 MB: output capped at 8 MiB, RSS growth bounded", async () => {
    const id = ids.get("100 kB") as string;
    const { result, base, peak } = await peakDuring(async () => {
      const res = await api("POST", `/v1/containers/${id}/exec`, {
        command: ["sh", "-c", `yes '${LINE.trimEnd()}' | head -n 100000`],
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { exitCode: number; stdout: string; truncated?: boolean };
      return { exitCode: body.exitCode, length: body.stdout.length, truncated: body.truncated };
    });
    const growth = (peak - base) / MiB;
    console.log(
      `exec 10 MB: node RSS ${(base / MiB).toFixed(0)} -> peak ${(peak / MiB).toFixed(0)} MiB (+${growth.toFixed(1)})`,
    );
    expect(result).toEqual({ exitCode: 0, length: 8 * MiB, truncated: true });
    expect(peak - base).toBeLessThan(2 * MAX_GROWTH);
  }, 60_000);

  test("tail, since and maxBytes select what comes back; bad values are 400 naming the field", async () => {
    const id = ids.get("1 MB") as string;
    const text = async (query: string) => {
      const res = await api("GET", `/v1/containers/${id}/logs?${query}`);
      expect(res.status).toBe(200);
      return res.text();
    };
    expect(await text("tail=3")).toBe(`${LINE.repeat(2)}done\n`);
    expect(await text("tail=0")).toBe("");
    expect(await text("maxBytes=250")).toBe(LINE.repeat(3).slice(0, 250));
    expect(await text(`since=${Math.floor(Date.now() / 1000) + 3600}`)).toBe("");
    expect((await text("since=2000-01-01T00:00:00Z")).length).toBe(10_000 * LINE.length + 5);
    for (const [query, field] of [
      ["tail=-1", "tail"],
      ["tail=lots", "tail"],
      ["since=yesterday", "since"],
      ["maxBytes=0", "maxBytes"],
      ["maxBytes=99999999999", "maxBytes"],
    ] as const) {
      const res = await api("GET", `/v1/containers/${id}/logs?${query}`);
      expect({ query, status: res.status }).toEqual({ query, status: 400 });
      expect(((await res.json()) as { error: { field: string } }).error.field).toBe(field);
    }
  }, 60_000);
});
