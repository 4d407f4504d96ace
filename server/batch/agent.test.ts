// Task agents on the real engine: many tasks through one shell in the container with no engine call each,
// exact stdout/stderr/exit codes with no bleed between tasks, outputs carried in the agent's answer
// (F/M/L/D), timeouts, a task that kills its agent, truncation, an image without /bin/sh, request values
// that arrive literally, and idle agents closed on the node's clock.
import { afterAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import Docker from "dockerode";
import { parseTar } from "nanotar";
import { type Clock, ManualClock, systemClock } from "../../core/index.ts";
import { openStore } from "../../store/index.ts";
import { removeTestNodes } from "../../test/support.ts";
import type { ContainerEngine } from "../engine/index.ts";
import { callApp, countingEngine, testServerApp } from "../fixtures.ts";
import { createDockerEngine } from "../index.ts";

const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const NODE_ID = randomBytes(32).toString("hex");
const root = mkdtempSync(join(tmpdir(), "p2prc-agent-"));
const NOSH = `p2prc-test/nosh-${randomBytes(4).toString("hex")}`;

afterAll(async () => {
  await removeTestNodes(docker, [], [NODE_ID]);
  await docker
    .getImage(NOSH)
    .remove({ force: true })
    .catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

let apps = 0;
/** The app over the real engine, every engine call counted by method name. */
function makeApp(clock: Clock = systemClock) {
  const real = createDockerEngine({ host: DOCKER_HOST });
  const { engine, calls } = countingEngine<ContainerEngine>(real);
  const { app } = testServerApp({
    engine,
    records: openStore(":memory:").containers,
    clock,
    nodeId: NODE_ID,
    dataDir: join(root, `app-${apps++}`),
  });
  const call = (method: string, path: string, body?: unknown) =>
    callApp(app, method, path, typeof body === "string" ? { raw: body } : { json: body });
  const container = async (body: Record<string, unknown> = {}) => {
    const r = await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"], ...body });
    expect(r.status).toBe(201);
    return r.json.id as string;
  };
  const task = (id: string, body: Record<string, unknown>) =>
    call("POST", `/v1/containers/${id}/tasks`, body);
  const stats = async () => (await call("GET", "/v1/tasks/stats")).json;
  /** The next task in the container is right, and the node has opened `opened` agents in all. */
  const nextIsRight = async (id: string, opened: number) => {
    const next = await task(id, sh("echo next"));
    expect(next.json).toMatchObject({ exitCode: 0, stdout: "next\n" });
    expect((await stats()).agentsOpened).toBe(opened);
  };
  return { call, calls, real, container, task, stats, nextIsRight };
}

const sh = (script: string, more: Record<string, unknown> = {}) => ({
  command: ["sh", "-c", script],
  ...more,
});

describe("a task agent", () => {
  test("runs many tasks with exact output and exit codes, no bleed, no engine call each", async () => {
    const { calls, container, task, stats, real } = makeApp();
    const id = await container();
    const first = await task(id, sh("echo first"));
    expect(first.json).toMatchObject({ exitCode: 0, stdout: "first\n", stderr: "" });
    calls.clear();
    const N = 30;
    for (let i = 0; i < N; i++) {
      const r = await task(id, sh(`printf 'out ${i}'; printf 'err ${i}\\n' >&2; exit ${i % 7}`));
      expect(r.json).toMatchObject({ exitCode: i % 7, stdout: `out ${i}`, stderr: `err ${i}\n` });
      expect(r.json.truncated).toBeUndefined();
      expect(r.json.timedOut).toBeUndefined();
    }
    // 30 tasks: no exec, no agent opened, only the directories' uploads (runs of 8, 16, …)
    expect(calls.get("exec")).toBeUndefined();
    expect(calls.get("openExec")).toBeUndefined();
    expect(calls.get("putArchive")).toBeLessThanOrEqual(3);
    expect(await stats()).toMatchObject({ viaAgent: N + 1, viaExec: 0, agentsOpened: 1, agentsOpen: 1 });

    // what a plain exec answers for the same commands, byte for byte (binary stdout, no trailing newline)
    for (const script of [
      "printf '\\000\\001\\377\\376 bin'",
      "printf 'no newline'",
      "printf '\\n\\n'",
      "nosuchcommand; echo after $?",
      "exit 255",
      "kill -TERM $$",
    ]) {
      const r = await task(id, sh(script));
      const plain = await real.exec(id, ["sh", "-c", script], { workingDir: r.json.workingDir });
      expect({ script, ...r.json, workingDir: undefined, signature: undefined }).toEqual({
        script,
        ...plain,
        workingDir: undefined,
        signature: undefined,
      });
    }
    // a missing program: the shell's 127 and its message (a plain exec's engine answers 126)
    const missing = await task(id, { command: ["nosuchprogram", "x"] });
    expect(missing.json.exitCode).toBe(127);
    expect(missing.json.stderr).toContain("nosuchprogram");
    // the working directory, env, and stdin that is not the agent's
    const env = await task(id, sh('pwd; echo "$X_1"; cat; echo done', { env: { X_1: "v" } }));
    expect(env.json).toMatchObject({ exitCode: 0, stdout: `${env.json.workingDir}\nv\ndone\n` });
    expect((await task(id, sh("echo still"))).json.stdout).toBe("still\n");
  }, 120_000);

  test("request values arrive literally: nothing in them is run by the agent's shell", async () => {
    const { container, task, stats } = makeApp();
    const id = await container();
    const nasty = [
      "it's",
      'say "hi"',
      "$(touch /tmp/pwned)",
      "`touch /tmp/pwned`",
      "a; touch /tmp/pwned",
      "line\nbreak",
      "*",
      "$HOME \u0024{PATH} \\ \\' '\\''",
      "' ; touch /tmp/pwned ; '",
      "",
    ];
    const r = await task(id, { command: ["printf", "%s\\n", ...nasty] });
    expect(r.json).toMatchObject({ exitCode: 0, stdout: nasty.map((s) => `${s}\n`).join("") });
    const env: Record<string, string> = {};
    nasty.forEach((v, i) => {
      env[`V${i}`] = v;
    });
    const e = await task(id, {
      command: [
        "sh",
        "-c",
        `for i in ${nasty.map((_, i) => i).join(" ")}; do eval "printf '%s\\n' \\"\\$V$i\\""; done`,
      ],
      env,
    });
    expect(e.json).toMatchObject({ exitCode: 0, stdout: nasty.map((s) => `${s}\n`).join("") });
    const outputs = await task(id, {
      command: ["true"],
      outputs: ["$(touch /tmp/pwned)", "'; touch /tmp/pwned; '"],
    });
    expect(outputs.json.outputs.map((o: { state: string }) => o.state)).toEqual(["missing", "missing"]);
    const pwned = await task(id, sh("test -e /tmp/pwned && echo pwned || echo clean"));
    expect(pwned.json.stdout).toBe("clean\n");
    expect((await stats()).viaExec).toBe(0);
  }, 60_000);

  test("concurrent tasks open at most the cap of agents; more wait for none (plain execs)", async () => {
    const { container, task, stats } = makeApp();
    const id = await container();
    const N = 24;
    const rs = await Promise.all(
      Array.from({ length: N }, (_, i) => task(id, sh(`sleep 0.3; echo ${i}; echo e${i} >&2`))),
    );
    rs.forEach((r, i) => {
      expect(r.json).toMatchObject({ exitCode: 0, stdout: `${i}\n`, stderr: `e${i}\n` });
    });
    const s = await stats();
    expect(s.agentsOpened).toBeLessThanOrEqual(16);
    expect(s.viaAgent + s.viaExec).toBe(N);
    expect(s.viaExec).toBe(N - s.viaAgent);
    expect(s.viaAgent).toBeGreaterThanOrEqual(s.agentsOpened);
    // now idle: a second wave reuses them
    const again = await Promise.all(Array.from({ length: 8 }, (_, i) => task(id, sh(`echo w${i}`))));
    again.forEach((r, i) => {
      expect(r.json.stdout).toBe(`w${i}\n`);
    });
    expect((await stats()).agentsOpened).toBe(s.agentsOpened);
  }, 120_000);

  test("outputs: a file in the answer (the archive route's tar), missing, too large, a directory read by the engine", async () => {
    const { calls, container, task, call } = makeApp();
    const id = await container();
    await task(id, sh("true"));
    calls.clear();
    const r = await task(
      id,
      sh(
        "printf 'one' > a.txt; mkdir d; echo in-dir > d/x; head -c 5000000 /dev/zero > big; printf '\\000\\377' > /tmp/bin; echo ok",
        { outputs: ["a.txt", "never", "big", "d", "/tmp/bin", "a.txt"] },
      ),
    );
    expect(r.json).toMatchObject({ exitCode: 0, stdout: "ok\n" });
    const [a, never, big, d, bin, again] = r.json.outputs;
    expect(never).toEqual({ path: "never", state: "missing" });
    expect(big).toEqual({ path: "big", state: "tooLarge" });
    for (const o of [a, d, bin, again]) expect(o.state).toBe("included");
    // the directory was read with the archive call; the files came with the answer
    expect(Object.fromEntries(calls)).toEqual({ getArchive: 1 });
    const files = (o: { tar: string }) =>
      parseTar(Buffer.from(o.tar, "base64")).map((f) => [f.name, Buffer.from(f.data ?? []).toString("hex")]);
    expect(files(a)).toEqual([["a.txt", Buffer.from("one").toString("hex")]]);
    expect(files(bin)).toEqual([["bin", "00ff"]]);
    expect(files(d)).toContainEqual(["d/x", Buffer.from("in-dir\n").toString("hex")]);
    // the same names and bytes as the archive route's tar for that file
    const route = await call("GET", `/v1/containers/${id}/files?path=${r.json.workingDir}/a.txt`);
    const viaRoute = parseTar(new Uint8Array(Buffer.from(route.text, "latin1")));
    expect(viaRoute.map((f) => [f.name, Buffer.from(f.data ?? []).toString("hex")])).toEqual(files(a));
  }, 60_000);

  // tasks that end oddly; each is followed by a task that must be right, with this many agents opened in all
  const odd: {
    what: string;
    body: Record<string, unknown>;
    reply: Record<string, unknown>;
    opened: number;
  }[] = [
    {
      what: "runs past its timeout answers timedOut (its agent closed)",
      body: sh("echo before; sleep 30", { timeoutSeconds: 1 }),
      reply: { exitCode: -1, timedOut: true, stdout: "before\n" },
      opened: 2,
    },
    {
      // the exec's stream ends once the task's own output closes: what it printed after the kill is kept
      what: "kills its agent's shell answers the exec's exit code",
      body: sh("echo going; kill -9 $PPID; sleep 1; echo after"),
      reply: { exitCode: 137, stdout: "going\nafter\n", stderr: "" },
      opened: 2,
    },
    {
      what: "closes its stdout and stderr answers its exit code",
      body: sh("exec 1>&-; exec 2>&-; exit 3"),
      reply: { exitCode: 3, stdout: "", stderr: "" },
      opened: 1,
    },
    {
      what: "prints a huge stdout is truncated (the marker still found)",
      body: sh("head -c 9000000 /dev/zero | tr '\\000' x; echo; echo tail >&2"),
      reply: { truncated: true, stdout: "x".repeat(8 * 1024 * 1024), stderr: "tail\n" },
      opened: 1,
    },
  ];
  for (const c of odd)
    test(`a task that ${c.what}; the next task is right`, async () => {
      const { container, task, nextIsRight } = makeApp();
      const id = await container();
      expect((await task(id, c.body)).json).toMatchObject(c.reply);
      await nextIsRight(id, c.opened);
    }, 60_000);

  test("dash (a Debian image's /bin/sh) answers the same: output, a signal, outputs", async () => {
    const { container, task, stats } = makeApp();
    const id = await container({ image: "p2prc-test/debian-sshd", command: ["sleep", "infinity"] });
    const r = await task(
      id,
      sh("printf 'x\\000y' > o.bin; printf 'out'; echo err >&2; kill -TERM $$", {
        outputs: ["o.bin", "none"],
      }),
    );
    expect(r.json).toMatchObject({ exitCode: 143, stdout: "out", stderr: "err\n" });
    expect(r.json.outputs[1]).toEqual({ path: "none", state: "missing" });
    const tar = parseTar(Buffer.from(r.json.outputs[0].tar, "base64"));
    expect(tar.map((f) => [f.name, Buffer.from(f.data ?? []).toString("hex")])).toEqual([
      ["o.bin", "780079"],
    ]);
    expect(await stats()).toMatchObject({ viaAgent: 1, viaExec: 0 });
  }, 60_000);

  test("a container without /bin/sh runs its tasks as plain execs (remembered)", async () => {
    // an image holding only a static busybox, not at /bin/sh
    const probe = await docker.createContainer({ Image: "p2prc-test/busybox", Cmd: ["true"] });
    const chunks: Buffer[] = [];
    for await (const c of (await probe.getArchive({ path: "/bin/busybox" })) as AsyncIterable<Buffer>)
      chunks.push(c);
    await probe.remove({ force: true });
    const tar = Readable.from([Buffer.concat(chunks)]);
    const progress = await docker.importImage(tar as never, { repo: NOSH, tag: "latest" });
    await new Promise((resolve, reject) =>
      docker.modem.followProgress(progress, (e: unknown) => (e ? reject(e) : resolve(undefined))),
    );
    const { container, task, stats } = makeApp();
    const id = await container({ image: NOSH, command: ["/busybox", "tail", "-f", "/dev/null"] });
    for (let i = 0; i < 3; i++) {
      const r = await task(id, { command: ["/busybox", "echo", `plain ${i}`] });
      expect(r.json).toMatchObject({ exitCode: 0, stdout: `plain ${i}\n` });
    }
    expect(await stats()).toMatchObject({ viaAgent: 0, viaExec: 3, agentsOpened: 0, noAgent: 1 });
  }, 60_000);

  test("an idle agent is closed after 30 s on the node's clock", async () => {
    const clock = new ManualClock();
    const { container, task, stats } = makeApp(clock);
    const id = await container();
    expect((await task(id, sh("echo one"))).json.stdout).toBe("one\n");
    expect((await stats()).agentsOpen).toBe(1);
    clock.advance(29_000);
    expect((await stats()).agentsOpen).toBe(1);
    clock.advance(1_000);
    expect((await stats()).agentsOpen).toBe(0);
    expect((await task(id, sh("echo two"))).json.stdout).toBe("two\n");
    expect((await stats()).agentsOpened).toBe(2);
  }, 60_000);
});
