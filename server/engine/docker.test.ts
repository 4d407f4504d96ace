// Integration test of the engine adapter against the real engine at $DOCKER_HOST (test/run.sh starts
// one and builds the offline image p2prc-test/busybox). Fails, never skips, when there is no engine.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { FrameDemuxer, P2prcError } from "../../core/index.ts";
import { thrown } from "./contract.ts";
import { createDockerEngine } from "./docker.ts";
import type { ContainerEngine, ContainerSpec } from "./types.ts";

const HOST = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
const IMAGE = "p2prc-test/busybox";
const RUN = `${process.pid}-${Date.now().toString(36)}`;
const LABELS = { "p2prc.node": "test", "p2prc.test": "1", "p2prc.run": RUN };

const engine: ContainerEngine = createDockerEngine({ host: HOST });
const docker = new Docker(
  HOST.startsWith("unix://") ? { socketPath: HOST.slice("unix://".length) } : { host: HOST },
);
const created: string[] = [];
const tmp = mkdtempSync(join(tmpdir(), "p2prc-docker-"));

function spec(name: string, overrides: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    name: `p2prc-test-${name}-${RUN}`,
    image: IMAGE,
    command: ["sleep", "300"],
    labels: LABELS,
    cpus: 0.5,
    memoryMb: 64,
    pidsLimit: 64,
    publish: [8080],
    gpu: false,
    ...overrides,
  };
}

async function createTracked(s: ContainerSpec): Promise<string> {
  const id = await engine.create(s);
  created.push(id);
  return id;
}

async function text(stream: ReadableStream<Uint8Array>): Promise<string> {
  return new Response(stream).text();
}

async function waitExited(id: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const info = await engine.inspect(id);
    if (info && !info.running) return;
    if (Date.now() > end) throw new Error(`container ${id} still running after ${timeoutMs} ms`);
    await Bun.sleep(50);
  }
}

beforeAll(async () => {
  const info = await engine.ping(); // fails the file loudly when there is no engine
  expect(info.version).toBeTruthy();
  expect(await engine.inspectImage(IMAGE)).toBeDefined();
});

afterAll(async () => {
  for (const id of created)
    await docker
      .getContainer(id)
      .remove({ force: true })
      .catch(() => {});
  rmSync(tmp, { recursive: true, force: true });
});

describe("docker engine", () => {
  test("ping returns the engine version", async () => {
    const info = await engine.ping();
    expect(info.version).toMatch(/^\d+\.\d+/);
    expect(info.apiVersion).toMatch(/^\d+\.\d+$/);
    expect(info.os).toBe("linux");
    expect(typeof info.gpuRuntime).toBe("boolean");
  });

  let id = "";

  test("create + start: running, labelled, port published", async () => {
    const s = spec("main");
    id = await createTracked(s);
    console.log(`created container ${id} (${s.name}) on ${HOST}`);
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const before = await engine.inspect(id);
    expect(before?.state).toBe("created");
    expect(before?.running).toBe(false);

    await engine.start(id);
    await engine.start(id); // already started is fine
    const info = await engine.inspect(id);
    expect(info).toBeDefined();
    expect(info?.id).toBe(id);
    expect(info?.name).toBe(s.name);
    expect(info?.image).toBe(IMAGE);
    expect(info?.state).toBe("running");
    expect(info?.running).toBe(true);
    expect(info?.exitCode).toBeUndefined();
    expect(info?.labels).toMatchObject(LABELS);
    expect(info?.ports).toHaveLength(1);
    expect(info?.ports[0]?.internal).toBe(8080);
    expect(info?.ports[0]?.external).toBeGreaterThan(0);
    expect(Math.abs((info?.createdAt ?? 0) - Date.now())).toBeLessThan(120_000);
  });

  test("isolation defaults reach the engine (checked with dockerode directly)", async () => {
    const raw = await docker.getContainer(id).inspect();
    const hc = raw.HostConfig;
    expect(hc.CapDrop).toEqual(["ALL"]);
    expect(hc.SecurityOpt ?? []).toContainEqual(expect.stringMatching(/^no-new-privileges(:true)?$/));
    expect(hc.PidsLimit).toBe(64);
    expect(hc.Memory).toBe(64 * 1024 * 1024);
    expect(hc.NanoCpus).toBe(500_000_000);
    expect(hc.Privileged).toBe(false);
    expect(hc.Binds ?? []).toEqual([]);
    expect(raw.Mounts ?? []).toEqual([]);
    expect(hc.RestartPolicy?.Name ?? "no").toBe("no");
    expect(hc.DeviceRequests ?? []).toEqual([]);
  });

  test("exec separates stdout, stderr and the exit code", async () => {
    const r = await engine.exec(id, ["sh", "-c", "echo out; echo err >&2; exit 3"]);
    expect(r.exitCode).toBe(3);
    expect(r.stdout).toBe("out\n");
    expect(r.stderr).toBe("err\n");
    expect(r.timedOut).toBeUndefined();
  });

  test("exec passes env and working dir, and caps output", async () => {
    const r = await engine.exec(id, ["sh", "-c", 'echo "$GREETING"; pwd'], {
      env: { GREETING: "hi there" },
      workingDir: "/tmp",
    });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe("hi there\n/tmp\n");
    const big = await engine.exec(id, ["sh", "-c", "yes x | head -c 5000"], { maxOutputBytes: 100 });
    expect(big.stdout).toHaveLength(100);
    expect(big.truncated).toBe(true);
  });

  test("openExec: stdin reaches the command as it is written, its end ends `cat`; a TTY resizes", async () => {
    const s = await engine.openExec(id, ["sh", "-c", "read a; echo got-$a; cat; echo cat-done; exit 4"], {
      tty: false,
    });
    const reader = s.output.getReader();
    const demux = new FrameDemuxer();
    let out = "";
    const readUntil = async (want: string) => {
      while (!out.includes(want)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`output ended before ${want}: ${out}`);
        for (const p of demux.push(value)) out += new TextDecoder().decode(p.data);
      }
    };
    await s.write(new TextEncoder().encode("first\n"));
    await readUntil("got-first\n"); // answered before the input ended: interactive
    await s.write(new TextEncoder().encode("through cat\n"));
    await readUntil("through cat\n");
    s.endInput();
    await readUntil("cat-done\n");
    for (;;) if ((await reader.read()).done) break;
    expect(out).toBe("got-first\nthrough cat\ncat-done\n");
    expect(await s.exitCode()).toBe(4);

    const t = await engine.openExec(id, ["sh", "-c", "read x; stty size"], { tty: true, cols: 91, rows: 27 });
    await t.resize(100, 40);
    await t.write(new TextEncoder().encode("go\r"));
    const text = await new Response(t.output).text();
    expect(text).toContain("40 100");
  });

  test("exec exit codes are stable over repeated short runs", async () => {
    for (let i = 0; i < 5; i++) {
      const r = await engine.exec(id, ["sh", "-c", `exit ${i}`]);
      expect(r.exitCode).toBe(i);
    }
  });

  test("exec with a timeout gives up waiting and says so", async () => {
    const started = Date.now();
    const r = await engine.exec(id, ["sleep", "30"], { timeoutMs: 200 });
    expect(r.timedOut).toBe(true);
    expect(r.exitCode).toBe(-1);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test("following logs of a running container ends when the signal aborts", async () => {
    const controller = new AbortController();
    const stream = await engine.logs(id, { follow: true, signal: controller.signal });
    setTimeout(() => controller.abort(), 200);
    const started = Date.now();
    await text(stream).catch(() => "");
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test("putArchive then getArchive round-trips a file", async () => {
    const src = join(tmp, "src");
    Bun.spawnSync(["mkdir", "-p", src]);
    const content = `hello from ${RUN}\n`;
    writeFileSync(join(src, "hello.txt"), content);
    const packed = Bun.spawnSync(["tar", "-C", src, "-cf", "-", "hello.txt"], { stdout: "pipe" });
    expect(packed.exitCode).toBe(0);
    await engine.putArchive(id, "/tmp", packed.stdout);

    const cat = await engine.exec(id, ["cat", "/tmp/hello.txt"]);
    expect(cat.stdout).toBe(content);

    const archive = new Uint8Array(
      await new Response(await engine.getArchive(id, "/tmp/hello.txt")).arrayBuffer(),
    );
    const unpacked = Bun.spawnSync(["tar", "-xOf", "-", "hello.txt"], { stdin: archive, stdout: "pipe" });
    expect(unpacked.exitCode).toBe(0);
    expect(unpacked.stdout.toString()).toBe(content);
  });

  test("getArchive of a missing path is E_NOT_FOUND", async () => {
    const err = await thrown(engine.getArchive(id, "/no/such/path"));
    expect(err.code).toBe("E_NOT_FOUND");
  });

  test("logs of a container that echoes (stdout and stderr, then follow to the end)", async () => {
    const lid = await createTracked(
      spec("logs", {
        command: ["sh", "-c", "echo line-one; echo line-two >&2; sleep 0.3; echo line-three"],
        publish: [],
      }),
    );
    await engine.start(lid);
    await waitExited(lid);
    const info = await engine.inspect(lid);
    expect(info?.state).toBe("exited");
    expect(info?.exitCode).toBe(0);

    const all = await text(await engine.logs(lid, { follow: false }));
    // stdout and stderr travel through separate pipes, so only the order within each is guaranteed
    expect(all.split("\n").sort()).toEqual(["", "line-one", "line-three", "line-two"]);
    expect(all.indexOf("line-one")).toBeLessThan(all.indexOf("line-three"));
    // the pause before line-three makes it the last line whichever pipe line-two took
    const tail = await text(await engine.logs(lid, { follow: false, tail: 1 }));
    expect(tail).toBe("line-three\n");
    // follow on a stopped container ends by itself
    const followed = await text(await engine.logs(lid, { follow: true }));
    expect(followed).toContain("line-one\n");
    expect(followed).toContain("line-three\n");
  });

  test("listByLabel finds ours by key=value and by key", async () => {
    const byValue = await engine.listByLabel(`p2prc.run=${RUN}`);
    expect(byValue.map((c) => c.id).sort()).toEqual([...created].sort());
    const main = byValue.find((c) => c.id === id);
    expect(main?.running).toBe(true);
    expect(main?.state).toBe("running");
    expect(main?.ports.map((p) => p.internal)).toEqual([8080]);
    expect(main?.labels["p2prc.node"]).toBe("test");
    expect((await engine.listByLabel("p2prc.test=1")).some((c) => c.id === id)).toBe(true);
    expect((await engine.listByLabel("p2prc.test")).some((c) => c.id === id)).toBe(true);
    expect(await engine.listByLabel(`p2prc.run=not-${RUN}`)).toEqual([]);
  });

  test("a duplicate name is E_CONFLICT; a missing image is E_NOT_FOUND", async () => {
    const dup = await thrown(engine.create(spec("main")));
    expect(dup.code).toBe("E_CONFLICT");
    const missing = await thrown(engine.create(spec("noimage", { image: "p2prc-test/does-not-exist:nope" })));
    expect(missing.code).toBe("E_NOT_FOUND");
  });

  test("exec in a missing container is E_NOT_FOUND", async () => {
    const err = await thrown(engine.exec("0".repeat(64), ["true"]));
    expect(err.code).toBe("E_NOT_FOUND");
  });

  test("remove is idempotent; inspect afterwards is undefined", async () => {
    await engine.remove(id);
    await engine.remove(id);
    expect(await engine.inspect(id)).toBeUndefined();
    expect((await engine.listByLabel(`p2prc.run=${RUN}`)).some((c) => c.id === id)).toBe(false);
    await expect(docker.getContainer(id).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });
});

describe("unreachable engine", () => {
  test("a missing socket is E_ENGINE_UNAVAILABLE, retryable, with a hint", async () => {
    const dead = createDockerEngine({ host: "unix:///nonexistent.sock" });
    const err = await thrown(dead.ping());
    expect(err.code).toBe("E_ENGINE_UNAVAILABLE");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("/nonexistent.sock");
    expect(err.hint).toBeTruthy();
    expect((await thrown(dead.inspect("x"))).code).toBe("E_ENGINE_UNAVAILABLE");
  });

  test("an unsupported address is E_CONFIG naming dockerHost", async () => {
    const err = await thrown(createDockerEngine({ host: "ftp://nope" }).ping());
    expect(err.code).toBe("E_CONFIG");
    expect(err.field).toBe("dockerHost");
  });
});

describe("an engine that hangs or answers garbage (a socket served here)", () => {
  const every = (e: ContainerEngine): [string, () => Promise<unknown>][] => [
    ["ping", () => e.ping()],
    ["create", () => e.create(spec("fault"))],
    ["start", () => e.start("abc")],
    ["inspect", () => e.inspect("abc")],
    ["exec", () => e.exec("abc", ["true"])],
    ["logs", () => e.logs("abc", { follow: false })],
    ["getArchive", () => e.getArchive("abc", "/etc")],
    ["remove", () => e.remove("abc")],
    ["listByLabel", () => e.listByLabel("p2prc.node")],
    ["listImages", () => e.listImages()],
    ["inspectImage", () => e.inspectImage("busybox")],
    ["pull", () => e.pull("busybox")],
  ];
  let mode: "hang" | "garbage" | "slow" = "hang";
  const sockets = new Set<import("node:net").Socket>();
  const path = join(tmp, "fault.sock");
  let server: import("node:http").Server;

  beforeAll(async () => {
    const { createServer } = await import("node:http");
    server = createServer((_req, res) => {
      if (mode === "hang") return;
      if (mode === "slow") {
        setTimeout(() => res.end("archive bytes"), 700);
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end("[[[ not json");
    });
    server.on("connection", (s) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    await new Promise<void>((ok) => server.listen(path, ok));
  });
  afterAll(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });

  test("every call fails E_ENGINE_UNAVAILABLE (retryable) within its limit, and its request is dropped", async () => {
    mode = "hang";
    const hung = createDockerEngine({ host: `unix://${path}`, timeoutMs: 200 });
    const results = await Promise.all(
      every(hung).map(async ([name, fn]) => {
        const started = performance.now();
        const err = await thrown(fn());
        return { name, code: err.code, retryable: err.retryable, ms: performance.now() - started };
      }),
    );
    for (const r of results) {
      expect(r).toMatchObject({ code: "E_ENGINE_UNAVAILABLE", retryable: true });
      // create, start and remove have three times the limit
      expect(r.ms).toBeLessThan(["create", "start", "remove"].includes(r.name) ? 900 : 500);
    }
    await Bun.sleep(100);
    expect(sockets.size).toBe(0); // aborted, not left open
  });

  test("an image save may take longer than engineTimeoutMs to begin (the engine exports it first)", async () => {
    mode = "slow";
    const slow = createDockerEngine({ host: `unix://${path}`, timeoutMs: 200 });
    const archive = await slow.saveImage("big:1");
    expect(await new Response(archive).text()).toBe("archive bytes");
  });

  test("garbage is E_ENGINE in p2prc's words, never JavaScript error text or a Buffer read as data", async () => {
    mode = "garbage";
    const bad = createDockerEngine({ host: `unix://${path}`, timeoutMs: 2000 });
    // start and remove give nothing back: a 200 with any body is as good as the engine's 204; a copy out
    // is the container's bytes streamed as they come (the client's tar reader judges them)
    const skip = ["start", "remove", "getArchive"];
    for (const [name, fn] of every(bad).filter(([n]) => !skip.includes(n))) {
      let outcome: unknown;
      try {
        outcome = { value: await fn() };
      } catch (err) {
        outcome = err;
      }
      // an image answer that is not an image and a container answer that is not a container are errors;
      // nothing may come back as if it were data
      expect({ name, isError: outcome instanceof P2prcError }).toEqual({ name, isError: true });
      const err = outcome as P2prcError;
      expect({ name, code: err.code }).toEqual({ name, code: "E_ENGINE" });
      expect(err.message).not.toMatch(/TypeError|undefined|is not|JSON|Unexpected|\[\[\[/);
    }
  });
});
