// The runtime image's archive as the engine receives it: a `docker save` layout (manifest, config whose
// diff_id is the layer's SHA-256, one layer) holding the executable, the libraries and /tmp; built once.
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTar } from "nanotar";
import { ManualClock, memoryLogger, RUNTIME_BIN, RUNTIME_KEEP_ALIVE } from "../core/index.ts";
import { openStore } from "../store/index.ts";
import { FakeEngine } from "./engine/fake.ts";
import type { ContainerEngine } from "./engine/index.ts";
import { callApp, testServerApp } from "./fixtures.ts";
import { mappedLibraries, RuntimeImage } from "./runtime-image.ts";

describe("the runtime image", () => {
  test("the libraries are the system's shared objects this process maps", () => {
    const maps = [
      "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6",
      "7f01-7f02 r--p 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6",
      "7f02-7f03 r-xp 00000000 08:01 2 /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
      "7f03-7f04 r-xp 00000000 08:01 3 /work/node_modules/better-sqlite3/build/better_sqlite3.node",
      "7f04-7f05 r--p 00000000 08:01 4 /usr/lib/locale/C.utf8/LC_CTYPE",
      "7f05-7f06 rw-p 00000000 00:00 0 [heap]",
    ].join("\n");
    expect(mappedLibraries(maps)).toEqual([
      "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
      "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]);
    expect(mappedLibraries().some((l) => /\/libc\.so/.test(l))).toBe(true);
  });

  test("is loaded once as a docker-save archive of the executable, its libraries and /tmp", async () => {
    const dir = mkdtempSync(join(tmpdir(), "p2prc-runtime-test-"));
    const exe = join(dir, "fake-exe");
    writeFileSync(exe, "#!fake executable\n");
    const loaded: Uint8Array[] = [];
    let present: string | undefined;
    const engine = {
      inspectImage: async (ref: string) =>
        ref === present ? { id: "x", tags: [ref], hasDefaultCommand: true } : undefined,
      loadImage: async (archive: ReadableStream<Uint8Array>) => {
        const bytes = new Uint8Array(await new Response(archive).arrayBuffer());
        loaded.push(bytes);
        const manifest = JSON.parse(
          new TextDecoder().decode(parseTar(bytes).find((f) => f.name === "manifest.json")?.data),
        ) as { RepoTags: string[] }[];
        present = manifest[0]?.RepoTags[0];
        return manifest[0]?.RepoTags ?? [];
      },
    } as unknown as ContainerEngine;
    const image = new RuntimeImage({ engine, logger: memoryLogger(), executable: exe, workDir: dir });
    const [a, b] = await Promise.all([image.ensure(), image.ensure()]);
    expect(a).toMatch(/^p2prc-runtime:[0-9a-f]{16}$/);
    expect(b).toBe(a);
    // a new node process finds it on the engine: not loaded again
    expect(
      await new RuntimeImage({ engine, logger: memoryLogger(), executable: exe, workDir: dir }).ensure(),
    ).toBe(a);
    expect(loaded).toHaveLength(1);

    const files = new Map(parseTar(loaded[0] as Uint8Array).map((f) => [f.name, f.data ?? new Uint8Array()]));
    const json = (name: string) => JSON.parse(new TextDecoder().decode(files.get(name)));
    expect(json("manifest.json")).toEqual([
      { Config: "config.json", RepoTags: [a], Layers: ["layer/layer.tar"] },
    ]);
    const layer = files.get("layer/layer.tar") as Uint8Array;
    const config = json("config.json");
    expect(config.rootfs.diff_ids).toEqual([`sha256:${createHash("sha256").update(layer).digest("hex")}`]);
    expect(config.config.Cmd).toEqual(RUNTIME_KEEP_ALIVE);
    expect(config.config.Env).toContain("BUN_BE_BUN=1");
    // a copy: nanotar reads a view's whole buffer
    const inLayer = new Map(parseTar(layer.slice()).map((f) => [f.name.replace(/\/$/, ""), f]));
    expect(new TextDecoder().decode(inLayer.get(RUNTIME_BIN.slice(1))?.data)).toBe("#!fake executable\n");
    expect(inLayer.get(RUNTIME_BIN.slice(1))?.attrs?.mode).toMatch(/755$/);
    expect(inLayer.get("tmp")?.attrs?.mode).toMatch(/1777$/);
    for (const lib of mappedLibraries()) expect(inLayer.has(lib.slice(1))).toBe(true);
    // only the files a process needs: no shell, nothing else of the host
    expect([...inLayer.keys()].some((p) => /(^|\/)(sh|bash|busybox)$/.test(p))).toBe(false);
  });
});

describe("a create naming p2prc-runtime", () => {
  const app = (config: { futures?: boolean; allowedImages?: string[] }) => {
    const clock = new ManualClock();
    const engine = new FakeEngine({ clock, images: ["p2prc-runtime:0123456789abcdef"] });
    const { app } = testServerApp({
      engine,
      records: openStore(":memory:").containers,
      clock,
      config,
      runtimeImage: async () => "p2prc-runtime:0123456789abcdef",
    });
    return (body: unknown) => callApp(app, "POST", "/v1/containers", { json: body });
  };

  test("gets the node's runtime image, whatever allowedImages lists", async () => {
    const create = app({ allowedImages: ["debian:bookworm-slim"] });
    const r = await create({ image: "p2prc-runtime", command: RUNTIME_KEEP_ALIVE });
    expect(r.status).toBe(201);
    expect(r.json.image).toBe("p2prc-runtime:0123456789abcdef");
    // any other image outside the list is still refused
    expect((await create({ image: "p2prc-test/busybox" })).status).toBe(403);
  });

  test("is refused where the operator set futures=false", async () => {
    const r = await app({ futures: false })({ image: "p2prc-runtime", command: RUNTIME_KEEP_ALIVE });
    expect(r.status).toBe(403);
    expect(r.json.error).toMatchObject({ code: "E_FORBIDDEN", field: "image" });
    expect(r.json.error.message).toContain("futures=false");
  });
});

describe("older runtime images", () => {
  test("are removed a day after they were built, unless a container still uses them", async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const current = "p2prc-runtime:00000000000000cc";
    const engine = new FakeEngine({
      clock,
      images: [
        "p2prc-test/busybox",
        current,
        "p2prc-runtime:00000000000000aa",
        "p2prc-runtime:00000000000000bb",
      ],
    });
    await engine.create({
      name: "uses-bb",
      image: "p2prc-runtime:00000000000000bb",
      labels: {},
      cpus: 1,
      memoryMb: 64,
      pidsLimit: 64,
      publish: [],
      gpu: false,
    });
    let now = t0 + 3600_000;
    const image = new RuntimeImage({ engine, logger: memoryLogger(), now: () => now });
    // an hour old: another p2prc version on this engine may still use it
    expect(await image.pruneOld(current)).toEqual([]);
    now = t0 + 25 * 3600_000;
    expect(await image.pruneOld(current)).toEqual(["p2prc-runtime:00000000000000aa"]);
    const left = (await engine.listImages()).flatMap((i) => i.tags).sort();
    expect(left).toEqual(["p2prc-runtime:00000000000000bb", current, "p2prc-test/busybox:latest"].sort());
  });
});
