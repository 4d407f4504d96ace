// Images between hosts with no registry, on real engines: two hosts, each its own Docker engine in its own
// network namespace (test/lab/engines.ts), each with a node over TLS; host a is also the client's
// machine. An image built here (busybox plus a file layer) is pushed by `p2prc image push` to b and run
// there; b fetches another from a (the client's own node) when asked for an image it lacks; a corrupted
// or truncated transfer, an over-quota push and a push of b's own image are refused, leaving nothing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import {
  containers,
  listImages,
  type RunningNode,
  removeImage,
  startContainer,
} from "../abstractions/index.ts";
import { runCli } from "../cli/index.ts";
import { pinnedTls, STREAMED_BODY_SHA256, sha256Hex, signRequest, signRequestHash } from "../core/index.ts";
import { createTar } from "../server/index.ts";
import { type EngineLab, engineLabUnavailable, startEngineLab } from "./lab/engines.ts";
import { nodeIdentity, startTestNode, waitFor } from "./support.ts";

const unavailable = engineLabUnavailable();
if (unavailable) console.warn(`test/images.test.ts skipped: ${unavailable}`);

const APP = "p2pimg/app:1";
const FETCHED = "p2pimg/fetch:1";
const BIG = "p2pimg/big:1";
const DAMAGED = "p2pimg/damaged:1";

/** An image in `docker`: busybox plus one layer with `files`, committed as `ref`. */
async function buildImage(docker: Docker, ref: string, files: Record<string, string | Uint8Array>) {
  const c = await docker.createContainer({ Image: "p2prc-test/busybox", Cmd: ["true"] });
  const tar = createTar(Object.entries(files).map(([path, content]) => ({ path, mode: 0o644, content })));
  await c.putArchive(Buffer.from(tar), { path: "/" });
  const [repo, tag] = ref.split(":") as [string, string];
  await c.commit({ repo, tag });
  await c.remove({ force: true });
}

describe.skipIf(unavailable !== undefined)("images with no registry, on two real engines", () => {
  let lab: EngineLab;
  let root: string;
  let a: RunningNode;
  let b: RunningNode;
  let engineA: Docker;
  let engineB: Docker;
  /** The client: host a's home and engine (its own node is a). */
  let client: { configDir: string; env: Record<string, string>; overrides: { dockerHost: string } };
  let bAddress: string;

  beforeAll(async () => {
    lab = await startEngineLab(["a", "b"]);
    engineA = new Docker({ socketPath: lab.dockerHost("a").slice("unix://".length) });
    engineB = new Docker({ socketPath: lab.dockerHost("b").slice("unix://".length) });
    await buildImage(engineA, APP, { "app/hello.txt": "hello from a pushed image\n" });
    await buildImage(engineA, FETCHED, { "app/hello.txt": "fetched from a member\n" });
    await buildImage(engineA, DAMAGED, { "app/hello.txt": "never loaded\n" });
    // 12 MB that do not compress: over b's 8 MiB quota
    await buildImage(engineA, BIG, { "app/big.bin": crypto.getRandomValues(new Uint8Array(12 << 20)) });
    root = mkdtempSync(join(tmpdir(), "p2prc-images-"));
    const homeA = join(root, "a");
    const homeB = join(root, "b");
    const [idA, idB] = [nodeIdentity(homeA).nodeId, nodeIdentity(homeB).nodeId];
    ({ node: a } = await startTestNode(homeA, {
      dockerHost: lab.dockerHost("a"),
      trusted: [idB],
      tls: true,
    }));
    const aPort = new URL(a.url).port;
    ({ node: b } = await startTestNode(homeB, {
      dockerHost: lab.dockerHost("b"),
      trusted: [idA],
      tls: true,
      bootstrap: [`127.0.0.1:${aPort}`],
      memberImageQuotaMb: 8,
    }));
    bAddress = `127.0.0.1:${new URL(b.url).port}`;
    client = { configDir: homeA, env: {}, overrides: { dockerHost: lab.dockerHost("a") } };
    // b must know a (alive) to fetch from it
    const { viewIPTable } = await import("../abstractions/index.ts");
    await waitFor(
      "b knows a",
      async () =>
        (await viewIPTable({ configDir: homeB, env: {} })).some((v) => v.id === idA && v.state === "alive") ||
        undefined,
      20_000,
    );
  }, 120_000);

  afterAll(async () => {
    await b?.stop();
    await a?.stop();
    await lab?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const spooled = () => readdirSync(join(root, "b", "images")).filter((f) => !f.startsWith("."));

  test("p2prc image push streams an image to b, which runs a container from it; image ls names its pusher", async () => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(["image", "push", bAddress, APP, "--config-dir", client.configDir], {
      io: { out: (t) => out.push(t), err: (t) => err.push(t) },
      env: { DOCKER_HOST: lab.dockerHost("a"), HOME: root },
    });
    expect({ code, err: err.filter((l) => !l.startsWith("sent ")) }).toEqual({ code: 0, err: [] });
    expect(out.join("\n")).toMatch(
      /^pushed p2pimg\/app:1 \([0-9a-f]{12}\) to https:\/\/127\.0\.0\.1:\d+: .* MB\/s$/,
    );
    const idA = (await engineA.getImage(APP).inspect()).Id;
    expect((await engineB.getImage(APP).inspect()).Id).toBe(idA);
    const listed = await listImages(client, bAddress);
    expect(listed).toEqual([
      { image: APP, id: idA, owner: a.nodeId, bytes: expect.any(Number), pushedAt: expect.any(String) },
    ]);
    const made = await startContainer(client, bAddress, { image: APP, command: ["sleep", "60"] });
    const ran = await containers.exec(client, { node: bAddress, id: made.id }, ["cat", "/app/hello.txt"]);
    expect(ran).toMatchObject({ exitCode: 0, stdout: "hello from a pushed image\n" });
    expect(spooled()).toEqual([]);
  }, 60_000);

  test("b fetches an image it lacks from a member that has it (the client's own node), verified by its id", async () => {
    await expect(engineB.getImage(FETCHED).inspect()).rejects.toThrow();
    const made = await startContainer(client, bAddress, { image: FETCHED, command: ["sleep", "60"] });
    const ran = await containers.exec(client, { node: bAddress, id: made.id }, ["cat", "/app/hello.txt"]);
    expect(ran).toMatchObject({ exitCode: 0, stdout: "fetched from a member\n" });
    expect((await engineB.getImage(FETCHED).inspect()).Id).toBe(
      (await engineA.getImage(FETCHED).inspect()).Id,
    );
    // it counts against the member that asked, who may remove it
    expect((await listImages(client, bAddress)).map((i) => [i.image, i.owner])).toContainEqual([
      FETCHED,
      a.nodeId,
    ]);
    expect(spooled()).toEqual([]);
  }, 60_000);

  /** A push by hand, as a-signed requests: `sent` goes over the wire, `claimed` is what the pusher read. */
  async function pushByHand(image: string, sent: Uint8Array, claimed: Uint8Array) {
    const tls = pinnedTls(b.certPem as string);
    const self = nodeIdentity(join(root, "a"));
    const url = `${b.url}/v1/images/push?image=${encodeURIComponent(image)}`;
    const headers = signRequestHash(self, "POST", url, STREAMED_BODY_SHA256);
    const up = await fetch(url, { method: "POST", headers, body: sent, tls } as RequestInit);
    expect(up.status).toBe(200);
    const { upload } = (await up.json()) as { upload: string };
    const commitUrl = `${b.url}/v1/images/push/${upload}`;
    const body = JSON.stringify({ sha256: sha256Hex(claimed), bytes: claimed.length });
    const signed = signRequest(self, "POST", commitUrl, body);
    const commit = await fetch(commitUrl, {
      method: "POST",
      headers: { "content-type": "application/json", ...signed },
      body,
      tls,
    } as RequestInit);
    return { status: commit.status, error: ((await commit.json()) as { error?: { field: string } }).error };
  }

  test("a corrupted or truncated transfer is refused and leaves no image and no file", async () => {
    const archive = new Uint8Array(
      await new Response((await engineA.getImage(DAMAGED).get()) as never).arrayBuffer(),
    );
    const half = archive.length >> 1;
    const corrupt = archive.slice();
    corrupt[half] = (corrupt[half] ?? 0) ^ 0xff;
    for (const sent of [corrupt, archive.subarray(0, half)]) {
      expect(await pushByHand(DAMAGED, sent, archive)).toEqual({
        status: 400,
        error: expect.objectContaining({ field: "sha256" }),
      });
      await expect(engineB.getImage(DAMAGED).inspect()).rejects.toThrow();
      expect(spooled()).toEqual([]);
    }
    // and one the engine itself refuses (the pusher read it cut, so the digest matches): nothing loaded
    const cut = archive.subarray(0, half);
    expect(await pushByHand(DAMAGED, cut, cut)).toEqual({
      status: 400,
      error: expect.objectContaining({ field: "body" }),
    });
    await expect(engineB.getImage(DAMAGED).inspect()).rejects.toThrow();
    expect(spooled()).toEqual([]);
  }, 60_000);

  test("an over-quota push and a push of b's own image are refused cleanly (4xx naming the field)", async () => {
    const err: string[] = [];
    const io = { out: () => {}, err: (t: string) => err.push(t) };
    const env = { DOCKER_HOST: lab.dockerHost("a"), HOME: root };
    const over = await runCli(["image", "push", bAddress, BIG, "--config-dir", client.configDir], {
      io,
      env,
    });
    expect(over).not.toBe(0);
    expect(err.join("\n")).toContain("memberImageQuotaMb=8");
    await expect(engineB.getImage(BIG).inspect()).rejects.toThrow();
    err.length = 0;
    const own = await runCli(
      ["image", "push", bAddress, "p2prc-test/busybox", "--config-dir", client.configDir],
      {
        io,
        env,
      },
    );
    expect(own).not.toBe(0);
    expect(err.join("\n")).toContain("not pushed by this caller");
    expect(spooled()).toEqual([]);
  }, 60_000);

  test("image rm removes a pushed image from b's engine (once no container uses it)", async () => {
    for (const c of await containers.list(client, bAddress))
      await containers.stop(client, { node: bAddress, id: c.id }, 0);
    const { removeContainer } = await import("../abstractions/index.ts");
    for (const c of await containers.list(client, bAddress)) await removeContainer(client, bAddress, c.id);
    const gone = await removeImage(client, bAddress, APP);
    expect(gone.image).toBe(APP);
    await expect(engineB.getImage(APP).inspect()).rejects.toThrow();
    expect((await listImages(client, bAddress)).map((i) => i.image)).toEqual([FETCHED]);
  }, 60_000);
});
