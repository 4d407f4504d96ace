// Interactive exec sessions (`p2prc exec -i/-t`) on FakeEngine: the signed opening, the one-time token of
// the stream, the owner-only resize and exit code, the limits; and that the auth middleware lets only the
// stream through unsigned.
import { describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { FrameDemuxer, generateIdentity, ManualClock, memoryLogger, signRequest } from "../core/index.ts";
import { openStore } from "../store/index.ts";
import { FakeEngine } from "./engine/fake.ts";
import { ExecSessions } from "./exec-sessions.ts";
import { callApp, testServerApp } from "./fixtures.ts";
import { type AuthEnv, authenticate, isSessionStream } from "./http/auth.ts";
import { errorResponse } from "./http/errors.ts";

function makeApp() {
  const clock = new ManualClock();
  const engine = new FakeEngine({ clock });
  const { app } = testServerApp({
    engine,
    records: openStore(":memory:").containers,
    clock,
    // the caller is named by a test header; every one an admin (ownership of containers is not the point)
    resolveCaller: (c) => ({ id: c.req.header("x-test-caller") ?? "alice", admin: true, operator: false }),
  });
  const call = (method: string, path: string, body?: unknown, caller = "alice") =>
    callApp(
      {
        request: (url, init) =>
          app.request(url, { ...init, headers: { ...init.headers, "x-test-caller": caller } }),
      },
      method,
      path,
      { json: body },
    );
  const io = (session: string, token: string | undefined, body = "") =>
    app.request(`http://127.0.0.1/v1/exec/${session}/io`, {
      method: "POST",
      headers: token === undefined ? {} : { "x-p2prc-exec-token": token },
      body,
    });
  return { app, clock, engine, call, io };
}

async function started(call: ReturnType<typeof makeApp>["call"]) {
  const made = await call("POST", "/v1/containers", { command: ["sleep", "3600"] });
  expect(made.status).toBe(201);
  return made.json.id as string;
}

const demuxed = async (res: Response) => {
  const out: Record<number, string> = { 1: "", 2: "" };
  const d = new FrameDemuxer();
  for (const p of d.push(new Uint8Array(await res.arrayBuffer())))
    out[p.stream] += new TextDecoder().decode(p.data);
  return out;
};

describe("exec sessions", () => {
  test("opened by a signed call; the stream needs its token, once; the exit code and resize are the owner's", async () => {
    const { call, io } = makeApp();
    const id = await started(call);
    const open = await call("POST", `/v1/containers/${id}/exec/sessions`, {
      command: ["sh", "-c", "echo hi; echo err >&2; exit 3"],
    });
    expect(open.status).toBe(201);
    expect(open.json).toMatchObject({ tty: false, attachWithinSeconds: 30 });
    const { session, token } = open.json as { session: string; token: string };
    expect(session).toMatch(/^[0-9a-f]{32}$/);
    expect(token.length).toBeGreaterThanOrEqual(43); // 256 bits, base64url

    for (const wrong of [undefined, "", `${token.slice(0, -1)}x`]) {
      const r = await io(session, wrong);
      expect(r.status).toBe(401);
      expect(((await r.json()) as { error: { field: string } }).error.field).toBe("x-p2prc-exec-token");
    }
    const r = await io(session, token);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/vnd.p2prc.frames");
    expect(await demuxed(r)).toEqual({ 1: "hi\n", 2: "err\n" });
    // the token is spent
    expect((await io(session, token)).status).toBe(409);

    expect((await call("GET", `/v1/exec/${session}`)).json).toEqual({ session, running: false, exitCode: 3 });
    // another caller does not see it
    expect((await call("GET", `/v1/exec/${session}`, undefined, "mallory")).status).toBe(404);
    expect((await call("POST", `/v1/exec/${session}/resize`, { cols: 80, rows: 24 }, "mallory")).status).toBe(
      404,
    );
    // no terminal to resize; bad bodies and ids name their field
    expect((await call("POST", `/v1/exec/${session}/resize`, { cols: 80, rows: 24 })).status).toBe(409);
    const bad = await call("POST", `/v1/exec/${session}/resize`, { cols: 0, rows: 24 });
    expect(bad.status).toBe(400);
    expect(bad.json.error.field).toBe("body.cols");
    const badId = await call("GET", "/v1/exec/not-a-session");
    expect(badId.status).toBe(400);
    expect(badId.json.error.field).toBe("session");
    const badOpen = await call("POST", `/v1/containers/${id}/exec/sessions`, { command: [], tty: "yes" });
    expect(badOpen.status).toBe(400);
  });

  test("a TTY session streams raw output; a session not attached within 30 s is closed and refused", async () => {
    const { call, io, clock } = makeApp();
    const id = await started(call);
    const tty = await call("POST", `/v1/containers/${id}/exec/sessions`, {
      command: ["sh", "-c", "echo raw; echo also >&2"],
      tty: true,
      cols: 100,
      rows: 30,
    });
    const r = await io(tty.json.session, tty.json.token);
    expect(r.headers.get("content-type")).toBe("application/octet-stream");
    expect(await r.text()).toBe("raw\nalso\n");
    expect((await call("POST", `/v1/exec/${tty.json.session}/resize`, { cols: 120, rows: 40 })).json).toEqual(
      {
        cols: 120,
        rows: 40,
      },
    );

    const late = await call("POST", `/v1/containers/${id}/exec/sessions`, { command: ["sleep", "100"] });
    clock.advance(30_001);
    const refused = await io(late.json.session, late.json.token);
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain(
      "not attached",
    );
  });

  test("a stopped container: 409; more than 16 open sessions of one caller: 429, others unaffected", async () => {
    const { call } = makeApp();
    const id = await started(call);
    for (let i = 0; i < 16; i++)
      expect(
        (await call("POST", `/v1/containers/${id}/exec/sessions`, { command: ["sleep", "100"] })).status,
      ).toBe(201);
    const over = await call("POST", `/v1/containers/${id}/exec/sessions`, { command: ["sleep", "100"] });
    expect(over.status).toBe(429);
    expect(over.json.error.code).toBe("E_RATE_LIMIT");
    expect(
      (await call("POST", `/v1/containers/${id}/exec/sessions`, { command: ["true"] }, "bob")).status,
    ).toBe(201);
    expect((await call("POST", `/v1/containers/${id}/stop`, {})).status).toBe(200);
    expect(
      (await call("POST", `/v1/containers/${id}/exec/sessions`, { command: ["true"] }, "bob")).status,
    ).toBe(409);
  });

  test("ExecSessions.closeAll closes every engine session (the node stops)", async () => {
    const clock = new ManualClock();
    const sessions = new ExecSessions({ clock });
    let closed = 0;
    const fake = {
      output: new ReadableStream<Uint8Array>(),
      write: async () => {},
      endInput: () => {},
      resize: async () => {},
      exitCode: async () => undefined,
      close: () => void closed++,
    };
    sessions.add("a", "c1", false, fake);
    sessions.add("b", "c2", true, { ...fake });
    expect(sessions.size).toBe(2);
    sessions.closeAll();
    expect(closed).toBe(2);
    expect(sessions.size).toBe(0);
  });
});

describe("the auth middleware and the session stream", () => {
  test("only POST /v1/exec/<32 hex>/io passes unsigned; the session's other routes need a signature", async () => {
    expect(isSessionStream("POST", `/v1/exec/${"a".repeat(32)}/io`)).toBe(true);
    for (const [m, p] of [
      ["GET", `/v1/exec/${"a".repeat(32)}/io`],
      ["POST", `/v1/exec/${"a".repeat(32)}`],
      ["POST", `/v1/exec/${"a".repeat(32)}/resize`],
      ["POST", `/v1/exec/${"a".repeat(31)}/io`],
      ["POST", `/v1/exec/${"a".repeat(32)}/io/x`],
      ["POST", `/v1/exec/../containers/io`],
    ] as const)
      expect(isSessionStream(m, p)).toBe(false);
    const self = generateIdentity();
    const clock = new ManualClock(1_767_225_600_000);
    const app = new Hono<AuthEnv>();
    app.use(
      "*",
      authenticate({
        selfId: self.nodeId,
        isMember: (id) => id === self.nodeId,
        isAdmin: () => true,
        skewMs: 30_000,
        clock,
        logger: memoryLogger(),
        maxBodyBytes: 1024,
      }),
    );
    app.post("/v1/exec/:s/io", (c) => c.text("stream"));
    app.get("/v1/exec/:s", (c) => c.text("status"));
    app.onError((err, c) => errorResponse(c, err));
    const s = "b".repeat(32);
    expect(await (await app.request(`http://n/v1/exec/${s}/io`, { method: "POST", body: "x" })).text()).toBe(
      "stream",
    );
    expect((await app.request(`http://n/v1/exec/${s}`)).status).toBe(401);
    const url = `http://n/v1/exec/${s}`;
    const signed = await app.request(url, { headers: signRequest(self, "GET", url, "", clock.now()) });
    expect(await signed.text()).toBe("status");
  });
});
