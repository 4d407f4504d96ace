// Member isolation, quotas, the rate limit and body handling end to end: a real node (in-process, real
// engine) reached over real signed HTTP, so the auth middleware decides who the caller is; two plain
// members, one cluster admin, a member kept for the rate limit, and an outsider.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import type { RunningNode } from "../abstractions/index.ts";
import {
  AUTH_HEADERS,
  fetchTransport,
  generateIdentity,
  type Identity,
  MAC_V1,
  macRequestHash,
  nodeOfUrl,
  PeerClient,
  sha256Hex,
  signRequest,
  systemClock,
} from "../core/index.ts";
import { createTar } from "../server/index.ts";
import { nodeIdentity, p2prcCommand, runCommand, signedFetch, startTestNode, waitFor } from "./support.ts";

const ROOT = resolve(import.meta.dir, "..");
const root = mkdtempSync(join(tmpdir(), "p2prc-members-"));
const home = join(root, "node");
const bob = generateIdentity(); // plain member
const carol = generateIdentity(); // plain member
const alice = generateIdentity(); // cluster admin
const eve = generateIdentity(); // plain member, used only by the rate-limit test
const outsider = generateIdentity();
const RATE = 40;
const procs: Subprocess[] = [];
let node: RunningNode;
let self: Identity;

const cli = async (args: string[]) => {
  const r = await runCommand(
    [...p2prcCommand(), ...args],
    { cwd: ROOT, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", P2PRC: home, P2PRC_LOG_LEVEL: "warn" } },
    procs,
  );
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
};

beforeAll(async () => {
  nodeIdentity(home);
  const users = [`${bob.nodeId}=bob`, `${carol.nodeId}=carol`, `${eve.nodeId}=eve`].join(",");
  await cli(["--host-cluster", "team", "--users", users]);
  await cli(["--cluster-add", `${alice.nodeId}=alice`, "--role", "admin", "--cluster", "team"]);
  ({ node, self } = await startTestNode(home, {
    memberMaxContainers: 1,
    memberRequestsPerMinute: RATE,
  }));
}, 60_000);

afterAll(async () => {
  if (node) {
    for (const c of (await api(self, "GET", "/v1/containers")).json.containers ?? [])
      await api(self, "DELETE", `/v1/containers/${c.id}`);
    await node.stop();
  }
  for (const p of procs) if (p.exitCode === null) p.kill(9);
  rmSync(root, { recursive: true, force: true });
});

/** A request signed by `who`; JSON in, JSON (or null) out. */
async function api(who: Identity, method: string, path: string, body?: unknown) {
  const res = await signedFetch(who, `${node.url}${path}`, {
    method,
    ...(body === undefined
      ? {}
      : body instanceof Uint8Array
        ? { body }
        : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies checked field by field
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, json, text };
}

/** Uploads being spooled in the node's data dir. */
const spooling = () => {
  try {
    return readdirSync(join(home, "uploads"));
  } catch {
    return [];
  }
};

const tarOf = (name: string, content: string) => createTar([{ path: name, mode: 0o644, content }]);

/** A ustar archive written by hand: createTar makes no hard links, which this test needs. */
function rawTar(entries: { name: string; content?: string; linkTo?: string }[]): Uint8Array {
  const blocks: Uint8Array[] = [];
  const enc = new TextEncoder();
  for (const e of entries) {
    const data = enc.encode(e.content ?? "");
    const h = new Uint8Array(512);
    const put = (at: number, text: string) => h.set(enc.encode(text), at);
    put(0, e.name);
    put(100, "0000644\0");
    put(108, "0000000\0");
    put(116, "0000000\0");
    put(124, `${data.length.toString(8).padStart(11, "0")}\0`);
    put(
      136,
      `${Math.floor(Date.now() / 1000)
        .toString(8)
        .padStart(11, "0")}\0`,
    );
    put(148, "        ");
    put(156, e.linkTo === undefined ? "0" : "1");
    if (e.linkTo !== undefined) put(157, e.linkTo);
    put(257, "ustar\0");
    put(263, "00");
    put(
      148,
      `${h
        .reduce((a, b) => a + b, 0)
        .toString(8)
        .padStart(6, "0")}\0 `,
    );
    blocks.push(h);
    if (data.length) {
      const padded = new Uint8Array(Math.ceil(data.length / 512) * 512);
      padded.set(data);
      blocks.push(padded);
    }
  }
  blocks.push(new Uint8Array(1024));
  return new Uint8Array(Buffer.concat(blocks));
}

describe("member isolation over signed HTTP", () => {
  test("each member gets 404 on the other's containers for every container route; admins and the operator see them", async () => {
    const made = await api(bob, "POST", "/v1/containers", { command: ["sleep", "60"] });
    expect(made.status).toBe(201);
    const id: string = made.json.id;
    const name: string = made.json.name;
    try {
      for (const ref of [id, id.slice(0, 12), name]) {
        const routes: [string, string, unknown?][] = [
          ["GET", `/v1/containers/${ref}`],
          ["GET", `/v1/containers/${ref}/logs`],
          ["POST", `/v1/containers/${ref}/exec`, { command: ["true"] }],
          ["PUT", `/v1/containers/${ref}/files?path=/tmp`, tarOf("x.txt", "carol was here\n")],
          ["GET", `/v1/containers/${ref}/files?path=/etc`],
          ["DELETE", `/v1/containers/${ref}`],
        ];
        for (const [method, path, body] of routes) {
          const r = await api(carol, method, path, body);
          expect(`${method} ${path} ${r.status}`).toBe(`${method} ${path} 404`);
          expect(r.json.error.code).toBe("E_NOT_FOUND");
        }
      }
      expect((await api(carol, "GET", "/v1/containers")).json.containers).toEqual([]);
      // nothing carol sent reached bob's container
      const cat = await api(bob, "POST", `/v1/containers/${id}/exec`, { command: ["ls", "/tmp"] });
      expect(cat.status).toBe(200);
      expect(cat.json.stdout).not.toContain("x.txt");
      const mine = await api(bob, "GET", "/v1/containers");
      expect(mine.json.containers.map((c: { id: string }) => c.id)).toEqual([id]);
      expect(mine.json.containers[0].owner).toBe(bob.nodeId);
      for (const boss of [alice, self]) {
        const seen = await api(boss, "GET", `/v1/containers/${id}`);
        expect(seen.status).toBe(200);
        expect(seen.json.owner).toBe(bob.nodeId);
      }
    } finally {
      expect((await api(bob, "DELETE", `/v1/containers/${id}`)).status).toBe(200);
    }
  }, 60_000);

  test("quotas bind a cluster admin too; only the node's own key is exempt", async () => {
    const ids: string[] = [];
    try {
      const first = await api(alice, "POST", "/v1/containers", { command: ["sleep", "60"] });
      expect(first.status).toBe(201);
      ids.push(first.json.id);
      const second = await api(alice, "POST", "/v1/containers", { command: ["sleep", "60"] });
      expect(second.status).toBe(429);
      expect(second.json.error.message).toContain("memberMaxContainers");
      for (let i = 0; i < 2; i++) {
        const own = await api(self, "POST", "/v1/containers", { command: ["sleep", "60"] });
        expect(own.status).toBe(201);
        ids.push(own.json.id);
      }
    } finally {
      for (const id of ids) await api(self, "DELETE", `/v1/containers/${id}`);
    }
  }, 60_000);

  test("the rate limit answers 429 past memberRequestsPerMinute; the node's own key is not limited", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < RATE + 1; i++) statuses.push((await api(eve, "GET", "/v1/containers")).status);
    expect(statuses.slice(0, RATE).every((s) => s === 200)).toBe(true);
    const over = await api(eve, "GET", "/v1/containers");
    expect(over.status).toBe(429);
    expect(over.json.error.code).toBe("E_RATE_LIMIT");
    for (let i = 0; i < RATE + 5; i++) expect((await api(self, "GET", "/v1/containers")).status).toBe(200);
  }, 60_000);
});

/** A body that sends one chunk and then never ends (a client that holds the connection open). */
function endless(): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new Uint8Array(64 * 1024));
    },
  });
}

describe("request MACs on a running node", () => {
  test("a member's client signs its first request, is told it may send MACs, and its next ones are MACs served as that member", async () => {
    const sent: Record<string, string>[] = [];
    const plain = fetchTransport();
    const peer = new PeerClient({
      identity: carol,
      clock: systemClock,
      transport: {
        send: (n, path, init) => {
          sent.push(init.headers as Record<string, string>);
          return plain.send(n, path, init);
        },
      },
    });
    const { node: ref } = nodeOfUrl(node.url, { id: self.nodeId });
    const first = await peer.request(ref, "/v1/containers");
    expect(first.headers.get(AUTH_HEADERS.accepts)).toBe(MAC_V1);
    const made = await peer.json<{ id: string }>(ref, "/v1/containers", {
      method: "POST",
      json: { image: "p2prc-test/busybox", command: ["sleep", "60"] },
    });
    const listed = await peer.json<{ containers: { id: string; owner: string }[] }>(ref, "/v1/containers");
    expect(listed.containers.find((c) => c.id === made.id)?.owner).toBe(carol.nodeId);
    expect(
      sent.map((h) => (h[AUTH_HEADERS.mac] ? "mac" : h[AUTH_HEADERS.signature] ? "signed" : "none")),
    ).toEqual(["signed", "mac", "mac"]);
    // bob cannot see it, by MAC as by signature; an outsider's MAC is refused as its signature is
    const asBob = macRequestHash(
      bob,
      "GET",
      `${node.url}/v1/containers/${made.id}`,
      sha256Hex(""),
      Date.now(),
      self.nodeId,
    );
    expect((await fetch(`${node.url}/v1/containers/${made.id}`, { headers: asBob })).status).toBe(404);
    const asOutsider = macRequestHash(
      outsider,
      "GET",
      `${node.url}/v1/containers`,
      sha256Hex(""),
      Date.now(),
      self.nodeId,
    );
    expect((await fetch(`${node.url}/v1/containers`, { headers: asOutsider })).status).toBe(403);
    expect((await peer.request(ref, `/v1/containers/${made.id}`, { method: "DELETE" })).status).toBe(200);
  });
});

describe("bodies are read only after the signer is known", () => {
  test("an unsigned, an outsider's and a forged request are answered without reading the body", async () => {
    const url = `${node.url}/v1/containers`;
    const forged = { ...signRequest(outsider, "POST", url, "x"), "x-p2prc-node": bob.nodeId };
    const cases: [string, Record<string, string>, number][] = [
      ["unsigned", {}, 401],
      ["outsider", signRequest(outsider, "POST", url, "x"), 403],
      ["forged as a member", forged, 401],
    ];
    for (const [what, headers, status] of cases) {
      const res = await fetch(url, {
        method: "POST",
        headers,
        body: endless(),
        signal: AbortSignal.timeout(5_000),
      }).catch((err) => ({ status: `${what}: ${(err as Error).message}` }));
      expect(`${what} ${res.status}`).toBe(`${what} ${status}`);
    }
  }, 60_000);

  test("a signed request sent chunked (a ReadableStream body) works", async () => {
    const body = JSON.stringify({ command: ["sleep", "60"] });
    const url = `${node.url}/v1/containers`;
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...signRequest(bob, "POST", url, body) },
      body: new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(body));
          controller.close();
        },
      }),
    });
    // biome-ignore lint/suspicious/noExplicitAny: checked field by field
    const json = (await res.json()) as any;
    expect(res.status).toBe(201);
    await api(bob, "DELETE", `/v1/containers/${json.id}`);
  }, 60_000);

  test("a member's body over 8 MiB is 413 (declared or chunked); its changed body is 401", async () => {
    const url = `${node.url}/v1/containers`;
    const big = new Uint8Array(8 * 1024 * 1024 + 1);
    const declared = await fetch(url, {
      method: "POST",
      headers: signRequest(bob, "POST", url, big),
      body: big,
    });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as { error: { code: string } }).error.code).toBe("E_TOO_LARGE");
    const chunked = await fetch(url, {
      method: "POST",
      headers: signRequest(bob, "POST", url, big),
      body: new Blob([big]).stream(),
    });
    expect(chunked.status).toBe(413);
    const changed = await fetch(url, {
      method: "POST",
      headers: { ...signRequest(bob, "POST", url, "{}"), "x-p2prc-content-sha256": sha256Hex("{ }") },
      body: "{}",
    });
    expect(changed.status).toBe(401);
  }, 60_000);
});

describe("uploads", () => {
  test("to a path that is a file: 400 naming path; hard links in the tar: never a 5xx", async () => {
    const made = await api(bob, "POST", "/v1/containers", { command: ["sleep", "60"] });
    expect(made.status).toBe(201);
    const id: string = made.json.id;
    try {
      const onFile = await api(bob, "PUT", `/v1/containers/${id}/files?path=/etc/passwd`, tarOf("x", "x\n"));
      expect(onFile.status).toBe(400);
      expect(onFile.json.error.field).toBe("path");
      expect(onFile.json.error.message).toContain("not a directory");
      const links = rawTar([
        { name: "a.txt", content: "a\n" },
        { name: "b.txt", linkTo: "a.txt" },
        { name: "c.txt", linkTo: "/etc/shadow" },
        { name: "d.txt", linkTo: "../../../etc/passwd" },
      ]);
      const linked = await api(bob, "PUT", `/v1/containers/${id}/files?path=/tmp`, links);
      expect(linked.status).toBeLessThan(500);
      expect(linked.json.error.field).toBe("body");
      const ok = await api(bob, "PUT", `/v1/containers/${id}/files?path=/tmp`, tarOf("up.txt", "hello\n"));
      expect(ok.status).toBe(200);
      const cat = await api(bob, "POST", `/v1/containers/${id}/exec`, { command: ["cat", "/tmp/up.txt"] });
      expect(cat.json.stdout).toBe("hello\n");
    } finally {
      await api(bob, "DELETE", `/v1/containers/${id}`);
    }
  }, 60_000);

  test("a member's uploads are spooled four at a time; a fifth waits unread; aborted ones are cleaned up", async () => {
    const made = await api(bob, "POST", "/v1/containers", { command: ["sleep", "60"] });
    expect(made.status).toBe(201);
    const id: string = made.json.id;
    const url = `${node.url}/v1/containers/${id}/files?path=/tmp`;
    const aborts = Array.from({ length: 5 }, () => new AbortController());
    const put = (a: AbortController) =>
      fetch(url, {
        method: "PUT",
        headers: signRequest(bob, "PUT", url, "x"),
        body: endless(),
        signal: a.signal,
      }).then(
        (r) => r.status,
        () => "aborted",
      );
    try {
      const first = aborts.slice(0, 4).map(put);
      await waitFor("four uploads spooling", async () => (spooling().length === 4 ? true : undefined), 5_000);
      const fifth = put(aborts[4] as AbortController);
      await Bun.sleep(300);
      expect(spooling().length).toBe(4); // the fifth waits for a slot, its body unread
      aborts[0]?.abort();
      await waitFor(
        "the fifth takes the freed slot",
        async () => (spooling().length === 4 ? true : undefined),
        5_000,
      );
      for (const a of aborts) a.abort();
      expect(await Promise.all([...first, fifth])).toEqual([
        "aborted",
        "aborted",
        "aborted",
        "aborted",
        "aborted",
      ]);
      await waitFor("spool files removed", async () => (spooling().length === 0 ? true : undefined), 5_000);
      const again = await api(bob, "PUT", `/v1/containers/${id}/files?path=/tmp`, tarOf("ok.txt", "ok\n"));
      expect(again.status).toBe(200);
    } finally {
      await api(bob, "DELETE", `/v1/containers/${id}`);
    }
  }, 60_000);

  test("an upload declared over 256 MiB is 413 at once, before anything is read", async () => {
    const url = `${node.url}/v1/containers/nope/files?path=/tmp`;
    const started = performance.now();
    const res = await fetch(url, {
      method: "PUT",
      headers: { ...signRequest(bob, "PUT", url, "x"), "content-length": String(300 * 1024 * 1024) },
      body: endless(),
      signal: AbortSignal.timeout(5_000),
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { field: string } }).error.field).toBe("body");
    expect(performance.now() - started).toBeLessThan(2_000);
  }, 60_000);
});
