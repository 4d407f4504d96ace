// The engine contract: what the server relies on a ContainerEngine to do, written once and run against
// every implementation (hono's router common.case.test.ts): docker.contract.test.ts on the real engine,
// fake.contract.test.ts on FakeEngine. Only busybox commands both understand are used (fake-shell.ts).
import { afterAll, test as bunTest, describe, expect } from "bun:test";
import { createTar, parseTar } from "nanotar";
import { FrameDemuxer, P2prcError } from "../../core/index.ts";
import type { ContainerEngine, ContainerSpec } from "./types.ts";

export interface ContractSubject {
  engine: ContainerEngine;
  /** An image the engine has, with busybox's sh, echo, cat, sleep, pwd and mkdir. */
  image: string;
}

const text = (s: ReadableStream<Uint8Array>) => new Response(s).text();

/** The P2prcError a call fails with (fails the test when it succeeds or throws anything else). */
export async function thrown(p: Promise<unknown>): Promise<P2prcError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(P2prcError);
    return err as P2prcError;
  }
  throw new Error("expected an error, got none");
}

/** Polls until `check` holds (the engine's own time passes; no clock is advanced here). */
async function eventually(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms`);
    await Bun.sleep(25);
  }
}

/**
 * Registers the contract's tests for one engine; `make` is called once, before the first test.
 * `notApplicable`: cases this engine cannot meet by design, each title with the reason (listed as skipped
 * under the reason, so a reader sees what the engine does not do).
 */
export function engineContract(
  name: string,
  make: () => ContractSubject,
  notApplicable: Record<string, string> = {},
): void {
  const run = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const labels = { "p2prc.node": `contract-${run}`, "p2prc.contract": name };
  const { engine, image } = make();
  const made: string[] = [];
  const networks: string[] = [];
  let n = 0;

  const spec = (o: Partial<ContainerSpec> = {}): ContainerSpec => ({
    name: `p2prc-contract-${run}-${n++}`,
    image,
    command: ["sleep", "300"],
    labels,
    cpus: 0.5,
    memoryMb: 64,
    pidsLimit: 64,
    publish: [],
    gpu: false,
    ...o,
  });
  const started = async (o: Partial<ContainerSpec> = {}) => {
    const id = await engine.create(spec(o));
    made.push(id);
    await engine.start(id);
    return id;
  };

  afterAll(async () => {
    await Promise.all(made.map((id) => engine.remove(id).catch(() => undefined)));
    for (const net of networks) await engine.removeNetwork(net).catch(() => undefined);
  }, 60_000);

  const test = (title: string, fn: () => Promise<void>, timeout?: number) => {
    const why = notApplicable[title];
    if (why) bunTest.skip(`${title} (not applicable: ${why})`, fn);
    else bunTest(title, fn, timeout);
  };

  describe(`engine contract: ${name}`, () => {
    test("ping names the engine's version", async () => {
      expect((await engine.ping()).version).toBeTruthy();
    });

    test("create → created with its name and labels; start → running; start again is fine", async () => {
      const s = spec({ labels: { ...labels, "p2prc.owner": "alice" } });
      const id = await engine.create(s);
      made.push(id);
      const before = await engine.inspect(id);
      expect(before).toMatchObject({ id, name: s.name, state: "created", running: false });
      expect(before?.labels).toMatchObject({ "p2prc.owner": "alice", "p2prc.contract": name });
      await engine.start(id);
      await engine.start(id);
      expect(await engine.inspect(id)).toMatchObject({
        state: "running",
        running: true,
        exitCode: undefined,
      });
    });

    test("a main process that ends: exited, with its exit code", async () => {
      const id = await started({ command: ["sh", "-c", "exit 7"] });
      await eventually(async () => (await engine.inspect(id))?.running === false);
      expect(await engine.inspect(id)).toMatchObject({ state: "exited", exitCode: 7 });
    });

    test("stop: exited and kept (stop again is fine); start runs it again", async () => {
      const id = await started({ command: ["sleep", "600"] });
      await engine.stop(id, 1);
      await engine.stop(id, 1);
      expect(await engine.inspect(id)).toMatchObject({ state: "exited", running: false });
      await engine.start(id);
      expect(await engine.inspect(id)).toMatchObject({ state: "running", running: true });
    }, 30_000);

    test("unknown ids: inspect is undefined, remove succeeds, the rest are E_NOT_FOUND", async () => {
      const ghost = "f".repeat(64);
      expect(await engine.inspect(ghost)).toBeUndefined();
      await engine.remove(ghost);
      for (const call of [
        () => engine.start(ghost),
        () => engine.stop(ghost, 0),
        () => engine.exec(ghost, ["true"]),
        () => engine.logs(ghost, { follow: false }),
        () => engine.getArchive(ghost, "/tmp"),
        () => engine.putArchive(ghost, "/tmp", createTar([{ name: "x", data: "x" }])),
      ])
        expect((await thrown(call())).code).toBe("E_NOT_FOUND");
    });

    test("remove: gone from inspect and the label list; removing again is success", async () => {
      const id = await started();
      await engine.remove(id);
      expect(await engine.inspect(id)).toBeUndefined();
      expect((await engine.listByLabel(`p2prc.node=${labels["p2prc.node"]}`)).map((c) => c.id)).not.toContain(
        id,
      );
      await engine.remove(id);
    });

    test("a taken name is E_CONFLICT on field name; an image the engine lacks is E_NOT_FOUND", async () => {
      const s = spec();
      made.push(await engine.create(s));
      expect(await thrown(engine.create(s))).toMatchObject({ code: "E_CONFLICT", field: "name" });
      expect((await thrown(engine.create(spec({ image: "p2prc-test/no-such-image:1" })))).code).toBe(
        "E_NOT_FOUND",
      );
    });

    test("listByLabel: key=value and key alone find ours, another value does not", async () => {
      const id = await started({ labels: { ...labels, "p2prc.owner": `bob-${run}` } });
      expect((await engine.listByLabel(`p2prc.owner=bob-${run}`)).map((c) => c.id)).toEqual([id]);
      expect((await engine.listByLabel("p2prc.contract")).map((c) => c.id)).toContain(id);
      expect(await engine.listByLabel(`p2prc.owner=carol-${run}`)).toEqual([]);
    });

    test("published ports: each container port gets a host port once started", async () => {
      const id = await started({ publish: [8080], publishHost: "127.0.0.1" });
      const ports = (await engine.inspect(id))?.ports ?? [];
      expect(ports.map((p) => p.internal)).toEqual([8080]);
      expect(ports[0]?.external).toBeGreaterThan(0);
    });

    describe("exec", () => {
      test("exit code, stdout and stderr apart; env and working directory", async () => {
        const id = await started();
        const r = await engine.exec(id, ["sh", "-c", "echo out; echo err >&2; exit 3"]);
        expect(r).toMatchObject({ exitCode: 3, stdout: "out\n", stderr: "err\n" });
        expect(r.timedOut).toBeUndefined();
        const env = await engine.exec(id, ["sh", "-c", "echo $GREETING; pwd"], {
          env: { GREETING: "hello there" },
          workingDir: "/tmp",
        });
        expect(env).toMatchObject({ exitCode: 0, stdout: "hello there\n/tmp\n" });
        expect((await engine.exec(id, ["false"])).exitCode).toBe(1);
      });

      test("past timeoutMs: exitCode -1 and timedOut; output over maxOutputBytes is cut and marked", async () => {
        const id = await started();
        const slow = await engine.exec(id, ["sleep", "5"], { timeoutMs: 300 });
        expect(slow).toMatchObject({ exitCode: -1, timedOut: true });
        const big = await engine.exec(id, ["echo", "0123456789"], { maxOutputBytes: 4 });
        expect(big).toMatchObject({ exitCode: 0, stdout: "0123", truncated: true });
      });

      test("in a container that is not running: E_CONFLICT", async () => {
        const id = await engine.create(spec());
        made.push(id);
        expect((await thrown(engine.exec(id, ["true"]))).code).toBe("E_CONFLICT");
        expect((await thrown(engine.openExec(id, ["true"], { tty: false }))).code).toBe("E_CONFLICT");
      });

      test("openExec: without a TTY the output comes in frames, stdout and stderr apart; the exit code after", async () => {
        const id = await started();
        const s = await engine.openExec(id, ["sh", "-c", "echo out; echo err >&2; exit 3"], { tty: false });
        const demux = new FrameDemuxer();
        const seen = { 1: "", 2: "" } as Record<number, string>;
        for await (const chunk of s.output)
          for (const p of demux.push(chunk)) seen[p.stream] += new TextDecoder().decode(p.data);
        expect(seen).toEqual({ 1: "out\n", 2: "err\n" });
        await eventually(async () => (await s.exitCode()) === 3);
        s.close();
      });

      test("openExec with a TTY: one raw stream", async () => {
        const id = await started();
        const s = await engine.openExec(id, ["sh", "-c", "echo tty-out; echo tty-err >&2"], { tty: true });
        const all = await text(s.output);
        // a terminal turns \n into \r\n; both lines, no frame headers
        expect(all.replaceAll("\r", "")).toBe("tty-out\ntty-err\n");
        await eventually(async () => (await s.exitCode()) === 0);
      });
    });

    describe("files", () => {
      test("put a tar, read it back by file and by directory, and exec sees the files", async () => {
        const id = await started();
        await engine.putArchive(
          id,
          "/tmp",
          createTar([
            // world-writable: root has no DAC_OVERRIDE in a p2prc container (CapDrop ALL)
            { name: "job/", attrs: { mode: "777", uid: 0, gid: 0 } },
            { name: "job/in.txt", data: "input\n", attrs: { mode: "644", uid: 0, gid: 0 } },
          ]),
        );
        const one = parseTar(
          new Uint8Array(await new Response(await engine.getArchive(id, "/tmp/job/in.txt")).arrayBuffer()),
        );
        expect(one.map((e) => [e.name, e.text])).toEqual([["in.txt", "input\n"]]);
        const dir = parseTar(
          new Uint8Array(await new Response(await engine.getArchive(id, "/tmp/job")).arrayBuffer()),
        );
        expect(dir.filter((e) => e.type === "file").map((e) => [e.name, e.text])).toEqual([
          ["job/in.txt", "input\n"],
        ]);
        expect((await engine.exec(id, ["cat", "in.txt"], { workingDir: "/tmp/job" })).stdout).toBe("input\n");
        // and what exec writes comes out
        const wrote = await engine.exec(id, ["sh", "-c", "echo made > out.txt"], { workingDir: "/tmp/job" });
        expect(wrote.exitCode).toBe(0);
        const out = parseTar(
          new Uint8Array(await new Response(await engine.getArchive(id, "/tmp/job/out.txt")).arrayBuffer()),
        );
        expect(out[0]?.text).toBe("made\n");
      });

      test("a missing path is E_NOT_FOUND on field path, both ways; a body that is not a tar is E_INVALID", async () => {
        const id = await started();
        expect(await thrown(engine.getArchive(id, "/no/such/path"))).toMatchObject({
          code: "E_NOT_FOUND",
          field: "path",
        });
        const tar = createTar([{ name: "x.txt", data: "x" }]);
        expect(await thrown(engine.putArchive(id, "/no/such/dir", tar))).toMatchObject({
          code: "E_NOT_FOUND",
          field: "path",
        });
        expect(
          await thrown(engine.putArchive(id, "/tmp", new TextEncoder().encode("not a tar"))),
        ).toMatchObject({
          code: "E_INVALID",
        });
      });

      test("disk usage counts what a container wrote", async () => {
        const id = await started({ labels: { ...labels, "p2prc.owner": `disk-${run}` } });
        await engine.putArchive(id, "/tmp", createTar([{ name: "blob", data: new Uint8Array(64 * 1024) }]));
        const usage = await engine.diskUsage(`p2prc.owner=disk-${run}`);
        expect(usage.get(id)).toBeGreaterThanOrEqual(64 * 1024);
      });
    });

    describe("logs", () => {
      test("stdout and stderr interleaved; tail; follow ends with the container", async () => {
        // the engine orders two pipes by arrival: the pauses make the order certain
        const id = await started({
          command: ["sh", "-c", "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three"],
        });
        await eventually(async () => (await engine.inspect(id))?.running === false);
        expect(await text(await engine.logs(id, { follow: false }))).toBe("one\ntwo\nthree\n");
        expect(await text(await engine.logs(id, { follow: false, tail: 1 }))).toBe("three\n");
        expect(await text(await engine.logs(id, { follow: true }))).toBe("one\ntwo\nthree\n");
        expect(await text(await engine.logs(id, { follow: false, maxBytes: 5 }))).toBe("one\nt");
      });

      test("follow streams lines as they come until the signal aborts", async () => {
        const id = await started({ command: ["sh", "-c", "echo first; sleep 300"] });
        const abort = new AbortController();
        const reader = (await engine.logs(id, { follow: true, signal: abort.signal })).getReader();
        let got = "";
        while (!got.includes("first\n")) {
          const { value, done } = await reader.read();
          if (done) break;
          got += new TextDecoder().decode(value);
        }
        expect(got).toBe("first\n");
        abort.abort();
        await eventually(async () => (await reader.read().catch(() => ({ done: true }))).done === true);
      });
    });

    describe("images", () => {
      test("the image is listed and inspected; an absent one is undefined; pulling an unknown one is E_NOT_FOUND", async () => {
        expect(await engine.inspectImage(image)).toMatchObject({ hasDefaultCommand: expect.any(Boolean) });
        expect(await engine.inspectImage("p2prc-test/no-such-image:1")).toBeUndefined();
        const tags = (await engine.listImages()).flatMap((i) => i.tags);
        expect(tags.some((t) => t === image || t === `${image}:latest`)).toBe(true);
        expect((await thrown(engine.pull("127.0.0.1:1/p2prc-test/no-such-image:1"))).code).toMatch(
          /^E_(NOT_FOUND|ENGINE|ENGINE_UNAVAILABLE)$/,
        );
      });
    });

    describe("image archives", () => {
      test("saved then loaded gives the image back under its tag; a truncated archive is E_INVALID; removing an absent image is success", async () => {
        const bytes = new Uint8Array(await new Response(await engine.saveImage(image)).arrayBuffer());
        expect(bytes.length).toBeGreaterThan(1024);
        const loaded = await engine.loadImage(new Response(bytes).body as ReadableStream<Uint8Array>);
        expect(loaded.some((t) => t === image || t === `${image}:latest`)).toBe(true);
        const half = bytes.subarray(0, Math.floor(bytes.length / 2));
        const bad = await thrown(engine.loadImage(new Response(half).body as ReadableStream<Uint8Array>));
        expect([bad.code, bad.field]).toEqual(["E_INVALID", "body"]);
        expect((await thrown(engine.saveImage("p2prc-test/no-such-image:1"))).code).toBe("E_NOT_FOUND");
        await engine.removeImage("p2prc-test/no-such-image:1");
      });
    });

    describe("networks", () => {
      test("ensure is idempotent under a race; counts running members; one in use stays; one gone is success", async () => {
        const net = `p2prc-contract-net-${run}`;
        networks.push(net);
        const netLabels = { "p2prc.node": labels["p2prc.node"], "p2prc.owner": `net-${run}` };
        await Promise.all([1, 2, 3].map(() => engine.ensureNetwork(net, netLabels)));
        const listed = await engine.listNetworks(`p2prc.owner=net-${run}`);
        expect(listed.map((x) => [x.name, x.labels, x.containers])).toEqual([[net, netLabels, 0]]);
        const id = await started({ network: net });
        expect((await engine.listNetworks(`p2prc.owner=net-${run}`))[0]?.containers).toBe(1);
        expect(await engine.removeNetwork(net)).toBe(false);
        await engine.remove(id);
        expect(await engine.removeNetwork(net)).toBe(true);
        expect(await engine.removeNetwork(net)).toBe(true);
        expect(await engine.listNetworks(`p2prc.owner=net-${run}`)).toEqual([]);
      });
    });
  });
}
