// Pushed images on FakeEngine, in-process: the two-request push, its policy (switch, allowlist, quota,
// whose tag), what a bad transfer leaves (nothing), removal, and the fetch from members.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Config, defaultConfig } from "../config/index.ts";
import { ManualClock, memoryLogger, sha256Hex } from "../core/index.ts";
import { openStore } from "../store/index.ts";
import { createServerApp } from "./app.ts";
import type { Caller } from "./caller.ts";
import { ContainerService } from "./containers.ts";
import { FakeEngine } from "./engine/fake.ts";
import { ImageService, type ImageSource } from "./image-service.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-images-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ALICE = "a".repeat(64);
const BOB = "b".repeat(64);
const ADMIN = "c".repeat(64);
const callers: Record<string, Caller> = {
  [ALICE]: { id: ALICE, admin: false, operator: false },
  [BOB]: { id: BOB, admin: false, operator: false },
  [ADMIN]: { id: ADMIN, admin: true, operator: false },
};

let n = 0;
function makeNode(config: Partial<Config> = {}, sources?: (ref: string) => ImageSource[]) {
  const clock = new ManualClock();
  const engine = new FakeEngine({ clock });
  const store = openStore(":memory:");
  const deps = {
    nodeId: "f".repeat(64),
    config: { ...defaultConfig("node"), defaultMemoryMb: 64, defaultCpus: 0.5, ...config },
    engine,
    records: store.containers,
    clock,
    logger: memoryLogger(),
    gpus: async () => [],
  };
  const images = new ImageService({
    ...deps,
    images: store.images,
    dataDir: join(root, `node-${n++}`),
    sources: sources && (async (ref) => sources(ref)),
  });
  const containers = new ContainerService({
    ...deps,
    fetchImage: (image, caller) => images.fetchFromMembers(image, caller),
  });
  const app = createServerApp({
    ...deps,
    version: "test",
    containers,
    images,
    dataDir: root,
    resolveCaller: (c) => callers[c.req.header("x-test-caller") ?? ""],
  });
  const call = async (as: string, method: string, path: string, body?: Uint8Array | object) => {
    const headers: Record<string, string> = { "x-test-caller": as };
    let raw: Uint8Array | string | undefined;
    if (body instanceof Uint8Array) raw = body;
    else if (body) {
      raw = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    const res = await app.request(`http://node${path}`, { method, headers, body: raw });
    const text = await res.text();
    return { status: res.status, json: text.startsWith("{") ? JSON.parse(text) : undefined, text };
  };
  return { app, engine, store, images, call, clock };
}

/** The archive of `ref` as another engine exports it. */
async function archiveOf(ref: string): Promise<Uint8Array> {
  const source = new FakeEngine({ images: [ref] });
  return new Uint8Array(await new Response(await source.saveImage(ref)).arrayBuffer());
}

async function push(node: ReturnType<typeof makeNode>, as: string, image: string, archive: Uint8Array) {
  const sent = await node.call(as, "POST", `/v1/images/push?image=${encodeURIComponent(image)}`, archive);
  if (sent.status !== 200) return sent;
  return node.call(as, "POST", `/v1/images/push/${sent.json.upload}`, {
    sha256: sha256Hex(archive),
    bytes: archive.length,
  });
}

describe("image push", () => {
  test("an archive pushed is loaded, labelled with its pusher and listed; nothing stays spooled", async () => {
    const node = makeNode();
    const archive = await archiveOf("team/app:1");
    const done = await push(node, ALICE, "team/app:1", archive);
    expect(done.status).toBe(201);
    const id = done.json.id as string;
    expect(id).toMatch(/^sha256:/);
    expect(done.json).toEqual({ image: "team/app:1", id, bytes: archive.length });
    expect((await node.engine.inspectImage("team/app:1"))?.id).toBe(id);
    const listed = await node.call(BOB, "GET", "/v1/images/pushed");
    expect(listed.json.images).toEqual([
      {
        image: "team/app:1",
        id: done.json.id,
        owner: ALICE,
        bytes: archive.length,
        pushedAt: expect.any(String),
      },
    ]);
    expect(node.store.images.bytesOf(ALICE)).toBe(archive.length);
    expect(node.images.spooled()).toEqual([]);
  });

  test("a corrupted or truncated transfer is refused (400 on sha256) and leaves no image and no file", async () => {
    const node = makeNode();
    const archive = await archiveOf("team/app:1");
    for (const damage of ["corrupt", "truncate"] as const) {
      const sent = damage === "corrupt" ? archive.slice() : archive.subarray(0, archive.length - 1024);
      if (damage === "corrupt") sent[2000] = (sent[2000] ?? 0) ^ 0xff;
      const up = await node.call(ALICE, "POST", "/v1/images/push?image=team/app:1", sent);
      expect(up.status).toBe(200);
      // the pusher's digest is of what it read from its engine: the whole, undamaged archive
      const commit = await node.call(ALICE, "POST", `/v1/images/push/${up.json.upload}`, {
        sha256: sha256Hex(archive),
        bytes: archive.length,
      });
      expect(commit.status).toBe(400);
      expect(commit.json.error).toMatchObject({ code: "E_INVALID", field: "sha256" });
      expect(await node.engine.inspectImage("team/app:1")).toBeUndefined();
      expect(node.store.images.list()).toEqual([]);
      expect(node.images.spooled()).toEqual([]);
    }
  });

  test("an archive whose layer does not match its digest is refused by the engine, nothing left", async () => {
    const node = makeNode();
    const archive = (await archiveOf("team/app:1")).slice();
    // inside layer.tar's contents (the id, repeated): the engine's own digest check fails
    const at = Buffer.from(archive).lastIndexOf("sha256:") - 10;
    archive[at] = (archive[at] ?? 0) ^ 0xff;
    const done = await push(node, ALICE, "team/app:1", archive);
    expect(done.status).toBe(400);
    expect(done.json.error).toMatchObject({ code: "E_INVALID", field: "body" });
    expect(await node.engine.inspectImage("team/app:1")).toBeUndefined();
    expect(node.images.spooled()).toEqual([]);
  });

  test("an archive that tags another image than the one pushed is refused before loading", async () => {
    const node = makeNode();
    const done = await push(node, ALICE, "team/app:1", await archiveOf("p2prc-test/busybox:latest"));
    expect(done.status).toBe(400);
    expect(done.json.error.message).toContain("must tag team/app:1 alone");
    expect(await node.engine.inspectImage("team/app:1")).toBeUndefined();
  });

  test("over quota: 413 on memberImageQuotaMb, by the size hint before the transfer or as it passes", async () => {
    const node = makeNode({ memberImageQuotaMb: 0 });
    const archive = await archiveOf("team/app:1");
    const hinted = await node.call(
      ALICE,
      "POST",
      `/v1/images/push?image=team/app:1&size=${archive.length}`,
      archive,
    );
    expect(hinted.status).toBe(413);
    expect(hinted.json.error).toMatchObject({ code: "E_TOO_LARGE", field: "memberImageQuotaMb" });
    const streamed = await node.call(ALICE, "POST", "/v1/images/push?image=team/app:1", archive);
    expect(streamed.status).toBe(413);
    expect(streamed.json.error.field).toBe("memberImageQuotaMb");
    expect(node.images.spooled()).toEqual([]);
    expect(await node.engine.inspectImage("team/app:1")).toBeUndefined();
  });

  test("the quota counts what a member pushed: a second image over it is refused, a re-push of one is not", async () => {
    const node = makeNode({ memberImageQuotaMb: 1 });
    const a = await archiveOf("team/a:1");
    const big = new Uint8Array(1024 * 1024 - a.length + 1);
    expect((await push(node, ALICE, "team/a:1", a)).status).toBe(201);
    expect((await push(node, ALICE, "team/a:1", a)).status).toBe(201);
    const over = await node.call(ALICE, "POST", `/v1/images/push?image=team/b:1&size=${big.length}`, big);
    expect(over.status).toBe(413);
    // another member has its own quota
    expect((await push(node, BOB, "team/b:1", await archiveOf("team/b:1"))).status).toBe(201);
  });

  test("not allowed: imagePushes=false and an image outside allowedImages are 403; another's tag is 409", async () => {
    const off = makeNode({ imagePushes: false });
    const archive = await archiveOf("team/app:1");
    const refused = await off.call(ALICE, "POST", "/v1/images/push?image=team/app:1", archive);
    expect(refused.status).toBe(403);
    expect(refused.json.error.field).toBe("imagePushes");
    const listed = makeNode({ allowedImages: ["team/other:1"] });
    const notListed = await listed.call(ALICE, "POST", "/v1/images/push?image=team/app:1", archive);
    expect(notListed.status).toBe(403);
    expect(notListed.json.error.field).toBe("image");
    // the node's own image, and then one Alice pushed, are not Bob's to replace
    const node = makeNode();
    const own = await node.call(BOB, "POST", "/v1/images/push?image=p2prc-test/busybox", archive);
    expect(own.status).toBe(409);
    expect((await push(node, ALICE, "team/app:1", archive)).status).toBe(201);
    expect((await node.call(BOB, "POST", "/v1/images/push?image=team/app:1", archive)).status).toBe(409);
    for (const n of [off, listed, node]) expect(n.images.spooled()).toEqual([]);
  });

  test("a push's second half is its pusher's only; an unknown upload is 404", async () => {
    const node = makeNode();
    const archive = await archiveOf("team/app:1");
    const up = await node.call(ALICE, "POST", "/v1/images/push?image=team/app:1", archive);
    const claim = { sha256: sha256Hex(archive), bytes: archive.length };
    expect((await node.call(BOB, "POST", `/v1/images/push/${up.json.upload}`, claim)).status).toBe(404);
    expect((await node.call(ALICE, "POST", `/v1/images/push/${"0".repeat(24)}`, claim)).status).toBe(404);
    expect((await node.call(ALICE, "POST", `/v1/images/push/${up.json.upload}`, claim)).status).toBe(201);
  });

  test("an upload never committed is removed after 10 minutes", async () => {
    const node = makeNode();
    const archive = await archiveOf("team/app:1");
    await node.call(ALICE, "POST", "/v1/images/push?image=team/app:1", archive);
    expect(node.images.spooled()).toHaveLength(1);
    node.clock.advance(10 * 60_000 + 1);
    node.images.sweep();
    await Bun.sleep(10);
    expect(node.images.spooled()).toEqual([]);
  });

  test("rm: the pusher or an admin; another member 403; in use 409", async () => {
    const node = makeNode();
    expect((await push(node, ALICE, "team/app:1", await archiveOf("team/app:1"))).status).toBe(201);
    const bob = await node.call(BOB, "DELETE", "/v1/images/pushed?image=team/app:1");
    expect(bob.status).toBe(403);
    const made = await node.call(ALICE, "POST", "/v1/containers", {
      image: "team/app:1",
      command: ["sleep", "60"],
    });
    expect(made.status).toBe(201);
    expect((await node.call(ALICE, "DELETE", "/v1/images/pushed?image=team/app:1")).status).toBe(409);
    await node.call(ALICE, "DELETE", `/v1/containers/${made.json.id}`);
    const removed = await node.call(ALICE, "DELETE", "/v1/images/pushed?image=team/app:1");
    expect(removed.json.removed).toMatchObject({ image: "team/app:1", owner: ALICE });
    expect(await node.engine.inspectImage("team/app:1")).toBeUndefined();
    expect(node.store.images.list()).toEqual([]);
    expect((await push(node, BOB, "team/b:1", await archiveOf("team/b:1"))).status).toBe(201);
    expect((await node.call(ADMIN, "DELETE", "/v1/images/pushed?image=team/b:1")).status).toBe(200);
    expect((await node.call(ADMIN, "DELETE", "/v1/images/pushed?image=team/b:1")).status).toBe(404);
  });
});

describe("node to node", () => {
  const sourceOf = async (ref: string, id?: string): Promise<ImageSource> => {
    const engine = new FakeEngine({ images: [ref] });
    const real = (await engine.inspectImage(ref))?.id as string;
    return { from: "d".repeat(64), id: id ?? real, sizeBytes: 1000, open: () => engine.saveImage(ref) };
  };

  test("a create for an image no registry has fetches it from a member, verified by its id", async () => {
    const source = await sourceOf("team/app:1");
    const node = makeNode({}, (ref) => (ref === "team/app:1" ? [source] : []));
    const made = await node.call(ALICE, "POST", "/v1/containers", {
      image: "team/app:1",
      command: ["sleep", "60"],
    });
    expect(made.status).toBe(201);
    expect((await node.engine.inspectImage("team/app:1"))?.id).toBe(source.id);
    expect(node.store.images.get("team/app:1")).toMatchObject({ owner: ALICE, imageId: source.id });
    expect(node.images.spooled()).toEqual([]);
  });

  test("an archive that loads as another id than announced is removed; the next member is tried", async () => {
    const liar = await sourceOf("team/app:1", `sha256:${"0".repeat(64)}`);
    const honest = await sourceOf("team/app:1");
    const node = makeNode({}, () => [liar]);
    const refused = await node.call(ALICE, "POST", "/v1/containers", {
      image: "team/app:1",
      command: ["sleep", "1"],
    });
    expect(refused.status).toBe(404);
    expect(refused.json.error.message).toContain("no member node has it");
    expect(await node.engine.inspectImage("team/app:1")).toBeUndefined();
    const both = makeNode({}, () => [liar, honest]);
    const made = await both.call(ALICE, "POST", "/v1/containers", {
      image: "team/app:1",
      command: ["sleep", "1"],
    });
    expect(made.status).toBe(201);
    expect((await both.engine.inspectImage("team/app:1"))?.id).toBe(honest.id);
  });

  test("a member's archive is served with its id; not with imagePushes=false, not outside allowedImages", async () => {
    const node = makeNode();
    const res = await node.app.request("http://node/v1/images/archive?image=p2prc-test/busybox", {
      headers: { "x-test-caller": BOB },
    });
    expect(res.status).toBe(200);
    const busybox = await node.engine.inspectImage("p2prc-test/busybox");
    expect(res.headers.get("x-p2prc-image-id")).toBe(busybox?.id ?? "");
    expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(1024);
    const off = makeNode({ imagePushes: false });
    expect((await off.call(BOB, "GET", "/v1/images/archive?image=p2prc-test/busybox")).status).toBe(403);
    const listed = makeNode({ allowedImages: ["team/x:1"] });
    expect((await listed.call(BOB, "GET", "/v1/images/archive?image=p2prc-test/busybox")).status).toBe(404);
  });
});
