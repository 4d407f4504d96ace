// The Hono app over FakeEngine, with no engine at all: the lifecycle app.test.ts runs on Docker, plus
// what Docker cannot be made to do on cue (a start that fails, an engine that goes away, a process that
// exits after a set time), with time on a ManualClock.
import { describe, expect, test } from "bun:test";
import { ManualClock } from "../core/index.ts";
import { openStore } from "../store/index.ts";
import { FakeEngine, type FakeEngineOptions } from "./engine/fake.ts";
import { callApp, testServerApp } from "./fixtures.ts";
import { createTar } from "./index.ts";

function makeApp(options: Omit<FakeEngineOptions, "clock"> = {}) {
  const clock = new ManualClock();
  const engine = new FakeEngine({ ...options, clock });
  const { app } = testServerApp({ engine, records: openStore(":memory:").containers, clock });
  /** One request: a Uint8Array body is sent as it is, anything else as JSON. */
  const call = (method: string, path: string, body?: unknown) =>
    callApp(app, method, path, body instanceof Uint8Array ? { raw: body } : { json: body });
  return { app, engine, clock, call };
}

describe("the container lifecycle on FakeEngine", () => {
  test("create, exec, files in and out, logs, delete; then 404 for each", async () => {
    const { call, engine } = makeApp();
    const made = await call("POST", "/v1/containers", { command: ["sh", "-c", "echo started; sleep 300"] });
    expect(made.status).toBe(201);
    const id = made.json.id as string;
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect((await call("GET", `/v1/containers/${id}`)).json).toMatchObject({
      running: true,
      state: "running",
    });

    const ex = await call("POST", `/v1/containers/${id}/exec`, {
      command: ["sh", "-c", "echo $GREETING; pwd; echo to-err >&2; exit 3"],
      env: { GREETING: "hi" },
      workingDir: "/tmp",
    });
    expect(ex.json).toMatchObject({ exitCode: 3, stdout: "hi\n/tmp\n", stderr: "to-err\n" });

    const tar = createTar([{ path: "in.txt", mode: 0o644, content: "hello" }]);
    expect((await call("PUT", `/v1/containers/${id}/files?path=/tmp`, tar)).status).toBe(200);
    const back = await call("GET", `/v1/containers/${id}/files?path=/tmp/in.txt`);
    expect(back.status).toBe(200);
    expect(back.text).toContain("hello");
    const missing = await call("GET", `/v1/containers/${id}/files?path=/no/such`);
    expect(missing.status).toBe(404);
    expect(missing.json.error).toMatchObject({ code: "E_NOT_FOUND", field: "path" });
    expect((await call("PUT", `/v1/containers/${id}/files?path=/no/such/dir`, tar)).status).toBe(404);

    expect((await call("GET", `/v1/containers/${id}/logs`)).text).toBe("started\n");

    expect((await call("DELETE", `/v1/containers/${id}`)).json).toEqual({ removed: id });
    expect(await engine.inspect(id)).toBeUndefined();
    for (const [method, path] of [
      ["GET", ""],
      ["DELETE", ""],
      ["GET", "/logs"],
      ["GET", "/files?path=/tmp"],
    ] as const)
      expect((await call(method, `/v1/containers/${id}${path}`)).status).toBe(404);
  });
});

describe("leases, stop and start (issue 18)", () => {
  test("lease renews from now; stop keeps the container; start runs it again; bad bodies name the field", async () => {
    const clock = new ManualClock();
    const engine = new FakeEngine({ clock });
    const records = openStore(":memory:").containers;
    const { app } = testServerApp({ engine, records, clock, config: { maxTtlSeconds: 7200 } });
    const call = (method: string, path: string, body?: unknown) => callApp(app, method, path, { json: body });
    const made = await call("POST", "/v1/containers", {
      command: ["sleep", "600"],
      ttlSeconds: 60,
      name: "web1",
    });
    const id = made.json.id as string;
    // by the name given at create, as by the node's own name for it
    expect((await call("GET", "/v1/containers/web1")).json.id).toBe(id);
    expect((await call("GET", "/v1/containers/p2prc-web1")).json.id).toBe(id);

    clock.advance(50_000);
    const renewed = await call("POST", `/v1/containers/${id}/lease`, { ttlSeconds: 3600 });
    expect(renewed.status).toBe(200);
    expect(Date.parse(renewed.json.expiresAt)).toBe(clock.now() + 3600_000);
    // the reconciler's view: not expired at the first lease's end any more
    expect(records.expired(clock.now() + 60_000)).toEqual([]);
    expect(records.expired(clock.now() + 3600_000).map((r) => r.id)).toEqual([id]);

    const over = await call("POST", `/v1/containers/${id}/lease`, { ttlSeconds: 7201 });
    expect(over.status).toBe(409);
    expect(over.json.error).toMatchObject({ code: "E_LIMIT", field: "ttlSeconds" });
    const zero = await call("POST", `/v1/containers/${id}/lease`, { ttlSeconds: 0 });
    expect(zero.status).toBe(400);
    expect(zero.json.error.field).toContain("ttlSeconds");
    const long = await call("POST", `/v1/containers/${id}/stop`, { timeoutSeconds: 99 });
    expect(long.status).toBe(400);
    expect(long.json.error.field).toContain("timeoutSeconds");

    const stopped = await call("POST", `/v1/containers/${id}/stop`);
    expect(stopped.json).toMatchObject({ id, running: false, state: "exited" });
    expect((await call("POST", `/v1/containers/${id}/stop`)).status).toBe(200);
    expect((await call("GET", "/v1/containers")).json.containers.map((c: { id: string }) => c.id)).toEqual([
      id,
    ]);
    expect((await call("POST", `/v1/containers/${id}/exec`, { command: ["true"] })).status).toBe(409);
    const started = await call("POST", `/v1/containers/${id}/start`);
    expect(started.json).toMatchObject({ id, running: true, state: "running" });
    expect((await call("POST", `/v1/containers/${id}/exec`, { command: ["true"] })).json.exitCode).toBe(0);

    const ghost = "f".repeat(12);
    expect((await call("POST", `/v1/containers/${ghost}/lease`, { ttlSeconds: 5 })).status).toBe(404);
    expect((await call("POST", `/v1/containers/${ghost}/stop`)).status).toBe(404);
    expect((await call("POST", `/v1/containers/${ghost}/start`)).status).toBe(404);
  });
});

describe("faults the real engine cannot be made to show on cue", () => {
  test("a start that fails: 502 E_ENGINE, and the created container is not left behind", async () => {
    const { call, engine } = makeApp({ faults: () => ({ startError: "OCI runtime create failed" }) });
    const r = await call("POST", "/v1/containers", {});
    expect(r.status).toBe(502);
    expect(r.json.error.code).toBe("E_ENGINE");
    expect(await engine.listByLabel("p2prc.node")).toEqual([]);
    expect((await call("GET", "/v1/containers")).json.containers).toEqual([]);
  });

  test("the engine goes away: create 503, health still 200; back again: create 201", async () => {
    const { call, engine } = makeApp();
    engine.down = true;
    const r = await call("POST", "/v1/containers", {});
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe("E_ENGINE_UNAVAILABLE");
    expect((await call("GET", "/v1/health")).status).toBe(200);
    engine.down = false;
    expect((await call("POST", "/v1/containers", {})).status).toBe(201);
  });

  test("a main process that runs 5 s of the clock and exits 3: running until then, exited after; exec then 409", async () => {
    const { call, clock } = makeApp({ faults: () => ({ runForMs: 5000, exitCode: 3 }) });
    const { id } = (await call("POST", "/v1/containers", {})).json;
    clock.advance(4999);
    expect((await call("GET", `/v1/containers/${id}`)).json.running).toBe(true);
    clock.advance(1);
    await Bun.sleep(0);
    expect((await call("GET", `/v1/containers/${id}`)).json).toMatchObject({ running: false, exitCode: 3 });
    expect((await call("POST", `/v1/containers/${id}/exec`, { command: ["true"] })).status).toBe(409);
  });

  test("exec timeoutSeconds is kept on the clock: timedOut at 1 s, not before", async () => {
    const { call, clock } = makeApp();
    const { id } = (await call("POST", "/v1/containers", {})).json;
    const t0 = clock.now();
    let answered = false;
    const pending = call("POST", `/v1/containers/${id}/exec`, {
      command: ["sleep", "30"],
      timeoutSeconds: 1,
    }).then((r) => {
      answered = true;
      return r;
    });
    for (let i = 0; i < 20 && !answered; i++) {
      await Bun.sleep(1);
      clock.advance(100);
      if (clock.now() - t0 < 1000) expect(answered).toBe(false);
    }
    expect((await pending).json).toMatchObject({ exitCode: -1, timedOut: true });
  });
});

describe("/v1/specs from a cache", () => {
  /** FakeEngine that counts its pings (the specs' one engine call). */
  class CountingEngine extends FakeEngine {
    pings = 0;
    override async ping() {
      this.pings++;
      return super.ping();
    }
  }

  test("the engine is asked once per 2 s however many requests come, in the background after the first", async () => {
    const clock = new ManualClock();
    const engine = new CountingEngine({ clock });
    const { app } = testServerApp({ engine, records: openStore(":memory:").containers, clock });
    const specs = async () => (await callApp(app, "GET", "/v1/specs")).json;
    for (let i = 0; i < 50; i++) expect((await specs()).engine).toEqual({ reachable: true, version: "fake" });
    expect((await callApp(app, "GET", "/server_info")).status).toBe(200);
    expect(engine.pings).toBe(1);
    // older than 2 s: this answer is the cached one, a refresh runs behind it
    clock.advance(2000);
    engine.down = true;
    expect((await specs()).engine.reachable).toBe(true);
    await Bun.sleep(0);
    expect(engine.pings).toBe(2);
    // the refresh found the engine down; an unreachable answer is checked again before it is given
    expect((await specs()).engine.reachable).toBe(false);
    engine.down = false;
    expect((await specs()).engine.reachable).toBe(true);
    expect(engine.pings).toBe(4);
  });

  test("a steady stream of answers reads the container table once, until it is written (issue 12)", async () => {
    const clock = new ManualClock();
    const records = openStore(":memory:").containers;
    let lists = 0;
    const counted = {
      ...records,
      list: () => {
        lists++;
        return records.list();
      },
    };
    const { app } = testServerApp({ engine: new FakeEngine({ clock }), records: counted, clock });
    for (let i = 0; i < 20; i++) expect((await callApp(app, "GET", "/v1/specs")).status).toBe(200);
    expect(lists).toBe(1);
    expect(
      (await callApp(app, "POST", "/v1/containers", { json: { command: ["sleep", "300"] } })).status,
    ).toBe(201);
    lists = 0;
    for (let i = 0; i < 20; i++) expect((await callApp(app, "GET", "/v1/specs")).json.tasks.running).toBe(1);
    expect(lists).toBe(1);
  });

  test("free capacity is read per answer, not cached: a created container shows at once", async () => {
    const { call } = makeApp();
    const before = (await call("GET", "/v1/specs")).json;
    expect((await call("POST", "/v1/containers", { command: ["sleep", "300"] })).status).toBe(201);
    const after = (await call("GET", "/v1/specs")).json;
    expect(after.tasks.running).toBe(before.tasks.running + 1);
    expect(after.free.containers).toBe(before.free.containers - 1);
  });
});
