// The node's long-lived future runtimes over FakeEngine, whose interactive exec of the runtime (and the
// kill a timeout sends) runs the real runtime loop as a local Bun process: the framing both ways, one
// future at a time, a timeout → killed and a fresh process, a dead runtime → started again, only the
// container's owner, and the answer signed as a task's.
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import {
  generateIdentity,
  ManualClock,
  RUNTIME_BIN,
  systemClock,
  taskReplyText,
  verifySignature,
} from "../core/index.ts";
import { openStore } from "../store/index.ts";
import { FakeEngine } from "./engine/fake.ts";
import type { ContainerEngine, ExecSession } from "./engine/index.ts";
import { callApp, testServerApp } from "./fixtures.ts";
import { FutureRuntimes } from "./future-runtimes.ts";

const spawned: { pid: number; kill: () => void }[] = [];
afterAll(() => {
  for (const p of spawned) {
    p.kill();
    rmSync(`/tmp/p2prc-runtime-${p.pid}`, { recursive: true, force: true });
  }
});

/** `p2prc -e <source>` as a local Bun process, its output in the engine's frames (stream 1, 2). */
function localSession(source: string): ExecSession {
  const proc = Bun.spawn([process.execPath, "-e", source], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  spawned.push({ pid: proc.pid, kill: () => proc.kill(9) });
  const frame = (stream: number, d: Uint8Array) => {
    const f = new Uint8Array(8 + d.length);
    f[0] = stream;
    new DataView(f.buffer).setUint32(4, d.length);
    f.set(d, 8);
    return f;
  };
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  const output = new ReadableStream<Uint8Array>({
    start: (c) => {
      ctl = c;
    },
  });
  const pump = async (s: ReadableStream<Uint8Array>, n: number) => {
    for await (const d of s) {
      try {
        ctl.enqueue(frame(n, d));
      } catch {
        // the node stopped reading (it dropped the session)
      }
    }
  };
  Promise.all([pump(proc.stdout, 1), pump(proc.stderr, 2), proc.exited]).then(() => {
    try {
      ctl.close();
    } catch {
      // cancelled by its reader already
    }
  });
  return {
    output,
    write: async (d) => {
      proc.stdin.write(d);
      await proc.stdin.flush();
    },
    endInput: () => proc.stdin.end(),
    resize: async () => {},
    exitCode: async () => (proc.exitCode ?? undefined) as number | undefined,
    close: () => {},
  };
}

/** The app over FakeEngine; the runtime's exec and its kill run locally, and are counted. */
function makeApp(sign?: (text: string) => string) {
  const fake = new FakeEngine({ clock: new ManualClock() });
  const calls = { openExec: 0, exec: 0 };
  const engine = new Proxy(fake, {
    get(target, name, receiver) {
      const v = Reflect.get(target, name, receiver);
      if (name === "openExec")
        return async (id: string, command: string[], o: never) => {
          calls.openExec++;
          await target.inspect(id);
          return command[0] === RUNTIME_BIN
            ? localSession(command[2] as string)
            : v.call(target, id, command, o);
        };
      if (name === "exec")
        return async (id: string, command: string[], o: never) => {
          calls.exec++;
          if (command[0] !== RUNTIME_BIN) return v.call(target, id, command, o);
          const p = Bun.spawn([process.execPath, "-e", command[2] as string]);
          return { exitCode: await p.exited, stdout: "", stderr: "" };
        };
      return typeof v === "function" ? v.bind(target) : v;
    },
  }) as ContainerEngine;
  const who = { id: "alice" };
  const { app } = testServerApp({
    engine,
    records: openStore(":memory:").containers,
    // real time: the runtime is a real process, and a future's timeout must fire while it runs
    clock: systemClock,
    sign,
    // who.id "": no caller (an unsigned request)
    resolveCaller: () => (who.id ? { id: who.id, admin: false, operator: false } : undefined),
  });
  const call = (method: string, path: string, body?: unknown) => callApp(app, method, path, { json: body });
  const future = (id: string, program: string, extra: Record<string, unknown> = {}) =>
    call("POST", `/v1/containers/${id}/futures/run`, { command: [RUNTIME_BIN, "-e", program], ...extra });
  return { call, future, calls, who, engine };
}

/** A FutureRuntimes of its own (options the app does not set) over one container of the app's engine. */
async function direct(o: { maxRunsPerRuntime?: number; maxOutputChars?: number }) {
  const { call, engine, calls } = makeApp();
  const id = await container(call);
  const containers = { record: () => ({ id }) as never };
  const rts = new FutureRuntimes({ containers, engine, clock: systemClock, ...o });
  return { rts, id, calls, caller: { id: "alice", admin: false, operator: false } };
}

async function container(call: ReturnType<typeof makeApp>["call"]): Promise<string> {
  const r = await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] });
  expect(r.status).toBe(201);
  return r.json.id as string;
}

describe("a node's future runtime", () => {
  test("runs futures one after another in one process: no exec each, env in, stdout and stderr out", async () => {
    const { call, future, calls } = makeApp();
    const id = await container(call);
    const prog = `globalThis.n = (globalThis.n ?? 0) + 1; process.stdout.write("run " + globalThis.n + " " + process.env.X + "\\n"); process.stderr.write("e\\n");`;
    for (const x of ["a", "b", "c"]) {
      const r = await future(id, prog, { env: { X: x } });
      expect(r.status).toBe(200);
      expect(r.json).toMatchObject({
        exitCode: 0,
        stdout: `run ${"abc".indexOf(x) + 1} ${x}\n`,
        stderr: "e\n",
      });
    }
    // one runtime started (one interactive exec), no exec for the futures; state in globals stays
    expect(calls).toEqual({ openExec: 1, exec: 0 });
    expect((await call("GET", "/v1/futures/stats")).json).toEqual({
      runs: 3,
      starts: 1,
      deaths: 0,
      timeouts: 0,
      alive: 1,
    });
    // a program that throws: exit code 1, its stack on stderr; the runtime goes on
    const bad = await future(id, `throw new Error("boom")`);
    expect(bad.json.exitCode).toBe(1);
    expect(bad.json.stderr).toContain("boom");
    expect((await future(id, `process.stdout.write("after")`)).json.stdout).toBe("after");
  });

  test("one future at a time: a second waits for the first; top-level await works", async () => {
    const { call, future } = makeApp();
    const id = await container(call);
    const slow = `await Bun.sleep(300); process.stdout.write(String(Date.now()))`;
    const fast = `process.stdout.write(String(Date.now()))`;
    const [a, b] = await Promise.all([future(id, slow), future(id, fast)]);
    expect(Number(b.json.stdout)).toBeGreaterThanOrEqual(Number(a.json.stdout));
  });

  test("a future past its timeout: answered timed out, its runtime killed; the next gets a fresh one", async () => {
    const { call, future, calls } = makeApp();
    const id = await container(call);
    await future(id, `globalThis.mark = 1`);
    const t0 = Date.now();
    const r = await future(id, `for (;;) {}`, { timeoutSeconds: 1 });
    expect(r.json).toMatchObject({ exitCode: -1, timedOut: true });
    expect(Date.now() - t0).toBeLessThan(5000);
    const next = await future(id, `process.stdout.write(String(globalThis.mark))`);
    expect(next.json).toMatchObject({ exitCode: 0, stdout: "undefined" });
    expect(calls).toEqual({ openExec: 2, exec: 1 }); // the kill
    expect((await call("GET", "/v1/futures/stats")).json).toMatchObject({ runs: 2, starts: 2, timeouts: 1 });
  });

  test("a runtime that died (process.exit) answers its exit code and is started again", async () => {
    const { call, future } = makeApp();
    const id = await container(call);
    const r = await future(id, `process.stdout.write("bye"); process.exit(3)`);
    expect(r.json.exitCode).toBe(3);
    expect((await future(id, `process.stdout.write("again")`)).json).toMatchObject({
      exitCode: 0,
      stdout: "again",
    });
    expect((await call("GET", "/v1/futures/stats")).json).toMatchObject({ starts: 2, deaths: 1, runs: 1 });
  });

  test("only the container's owner; a future's command only; the answer signed as a task's", async () => {
    const key = generateIdentity();
    const { call, future, who } = makeApp((text) => key.sign(text));
    const id = await container(call);
    const r = await future(id, `process.stdout.write("signed")`);
    const fields = { containerId: id, exitCode: 0, stdout: "signed", stderr: "", timedOut: false };
    expect(verifySignature(key.nodeId, taskReplyText(fields), r.json.signature)).toBe(true);
    expect(
      verifySignature(key.nodeId, taskReplyText({ ...fields, stdout: "forged" }), r.json.signature),
    ).toBe(false);
    const wrong = await call("POST", `/v1/containers/${id}/futures/run`, { command: ["sh", "-c", "true"] });
    expect(wrong.status).toBe(400);
    expect(wrong.json.error).toMatchObject({ code: "E_INVALID", field: "command" });
    who.id = "mallory";
    const other = await future(id, `process.stdout.write("not yours")`);
    expect(other.status).toBe(404);
    expect(other.json.stdout).toBeUndefined();
    who.id = "";
    expect((await future(id, `process.stdout.write("anyone")`)).status).toBe(401);
    expect((await call("GET", "/v1/futures/stats")).status).toBe(401);
  });

  test("a runtime that served its share is retired; the next future gets a fresh one", async () => {
    const { rts, id, caller, calls } = await direct({ maxRunsPerRuntime: 2 });
    const pids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await rts.run(id, caller, {
        command: [RUNTIME_BIN, "-e", "process.stdout.write(String(process.pid))"],
      });
      pids.push(r.stdout);
    }
    expect(new Set(pids).size).toBe(3); // 2 + 2 + 1
    expect(rts.stats()).toMatchObject({ runs: 5, starts: 3, deaths: 0 });
    expect(calls.openExec).toBe(3);
    rts.closeAll();
  });

  test("a runtime whose output passes the limit is killed; the future's answer says so", async () => {
    const { rts, id, caller } = await direct({ maxOutputChars: 10_000 });
    const flood = `for (let i = 0; i < 100; i++) require("node:fs").writeSync(1, "x".repeat(1000)); await Bun.sleep(60_000)`;
    const r = await rts.run(id, caller, { command: [RUNTIME_BIN, "-e", flood] });
    expect(r).toMatchObject({ exitCode: -1, truncated: true });
    expect(r.stderr).toContain("the output passed 10000 characters (killed)");
    const ok = await rts.run(id, caller, { command: [RUNTIME_BIN, "-e", `process.stdout.write("fresh")`] });
    expect(ok).toMatchObject({ exitCode: 0, stdout: "fresh" });
    expect(rts.stats()).toMatchObject({ starts: 2, runs: 1 });
    rts.closeAll();
  });
});
