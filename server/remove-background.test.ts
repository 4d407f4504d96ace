// `DELETE /v1/containers/:id?background=1` (a batch's pool at its end): answered 202 once the lease has
// ended, the engine's removal behind it; a removal that fails or never happens (the node stopped) is
// done by the next reconcile pass, since the container's lease is over.
import { describe, expect, test } from "bun:test";
import { ManualClock, memoryLogger } from "../core/index.ts";
import { openStore } from "../store/index.ts";
import { FakeEngine } from "./engine/fake.ts";
import { callApp, testServerApp } from "./fixtures.ts";
import { Reconciler } from "./reconcile.ts";

/** A FakeEngine whose removals wait for `release()` (or fail with `fail`). */
class GatedEngine extends FakeEngine {
  private gate: Promise<void> = new Promise(() => {});
  release: () => void = () => {};
  fail: Error | undefined;
  constructor(clock: ManualClock) {
    super({ clock });
    this.close();
  }
  close(): void {
    this.gate = new Promise((r) => {
      this.release = r;
    });
  }
  override async remove(id: string): Promise<void> {
    await this.gate;
    if (this.fail) throw this.fail;
    return super.remove(id);
  }
}

function setup() {
  const clock = new ManualClock();
  const engine = new GatedEngine(clock);
  const records = openStore(":memory:").containers;
  const { app, containers } = testServerApp({ engine, records, clock });
  const call = (method: string, path: string, body?: unknown) => callApp(app, method, path, { json: body });
  const reconciler = new Reconciler({
    nodeId: "f".repeat(64),
    engine,
    records,
    clock,
    logger: memoryLogger(),
    sshHost: "127.0.0.1",
    creating: () => containers.creating(),
  });
  return { clock, engine, records, containers, call, reconciler };
}

describe("a removal behind the node's answer", () => {
  test("202 before the engine removes it; its lease ended first; gone once the engine is done", async () => {
    const { clock, engine, records, containers, call } = setup();
    const id = (
      await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"], ttlSeconds: 3600 })
    ).json.id as string;
    const r = await call("DELETE", `/v1/containers/${id}?background=1`);
    expect(r.status).toBe(202);
    expect(r.json).toEqual({ removing: id });
    // answered while the engine's removal waits: the container is there, its lease over
    expect((await engine.inspect(id))?.running).toBe(true);
    expect(records.get(id)?.expiresAt).toBeLessThanOrEqual(clock.now());
    engine.release();
    await containers.settled();
    expect(await engine.inspect(id)).toBeUndefined();
    expect(records.get(id)).toBeUndefined();
    // without the query: removed before the answer, as always
    engine.close();
    const id2 = (await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] })).json
      .id as string;
    const plain = call("DELETE", `/v1/containers/${id2}`);
    await Bun.sleep(5);
    expect(await engine.inspect(id2)).toBeDefined();
    engine.release();
    expect((await plain).json).toEqual({ removed: id2 });
    expect(await engine.inspect(id2)).toBeUndefined();
  });

  test("a removal that failed (or a node that stopped before it) is done by the next reconcile pass", async () => {
    const { engine, records, containers, call, reconciler } = setup();
    const id = (
      await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"], ttlSeconds: 3600 })
    ).json.id as string;
    engine.fail = new Error("engine busy");
    expect((await call("DELETE", `/v1/containers/${id}?background=1`)).status).toBe(202);
    engine.release();
    await containers.settled();
    expect(records.get(id)).toBeDefined();
    expect(await engine.inspect(id)).toBeDefined();
    engine.fail = undefined;
    const report = await reconciler.run();
    expect(report.expired).toHaveLength(1);
    expect(await engine.inspect(id)).toBeUndefined();
    expect(records.get(id)).toBeUndefined();
  });

  test("another member cannot remove it that way either", async () => {
    const clock = new ManualClock();
    const engine = new GatedEngine(clock);
    engine.release();
    const records = openStore(":memory:").containers;
    let who = "a";
    const { app } = testServerApp({
      engine,
      records,
      clock,
      resolveCaller: () => ({ id: who, admin: false, operator: false }),
    });
    const id = (
      await callApp(app, "POST", "/v1/containers", { json: { command: ["tail", "-f", "/dev/null"] } })
    ).json.id as string;
    who = "b";
    const r = await callApp(app, "DELETE", `/v1/containers/${id}?background=1`);
    expect(r.status).toBe(404);
    expect(records.get(id)?.expiresAt).toBeGreaterThan(clock.now());
  });
});
