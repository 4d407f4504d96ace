// The auth middleware alone (no engine): the order of its checks and what it reads for whom.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hono } from "hono";
import {
  AUTH_HEADERS,
  generateIdentity,
  MAC_V1,
  ManualClock,
  macRequestHash,
  memoryLogger,
  NonceCache,
  STREAMED_BODY_SHA256,
  sha256Hex,
  signRequest,
  signRequestHash,
} from "../../core/index.ts";
import { type AuthEnv, type AuthOptions, authenticate, signedCaller } from "./auth.ts";
import { errorResponse } from "./errors.ts";

const self = generateIdentity();
const member = generateIdentity();
const outsider = generateIdentity();
const START = 1_767_225_600_000;

function makeApp(over: Partial<AuthOptions> = {}) {
  const clock = new ManualClock(START);
  const spoolDir = mkdtempSync(join(tmpdir(), "p2prc-auth-"));
  const app = new Hono<AuthEnv>();
  app.use(
    "*",
    authenticate({
      selfId: self.nodeId,
      isMember: (id) => id === self.nodeId || id === member.nodeId,
      isAdmin: (id) => id === self.nodeId,
      skewMs: 30_000,
      clock,
      logger: memoryLogger(),
      maxBodyBytes: 1024,
      maxUploadBytes: 4096,
      spoolDir,
      requestKey: (id) => self.requestKey(id, "in"),
      ...over,
    }),
  );
  app.post("/v1/echo", async (c) => c.json({ caller: signedCaller(c), body: await c.req.json() }));
  app.put("/v1/containers/:id/files", (c) => c.json({ spooled: readdirSync(spoolDir).length }));
  app.onError((err, c) => errorResponse(c, err));
  return { app, clock, spoolDir, [Symbol.dispose]: () => rmSync(spoolDir, { recursive: true, force: true }) };
}

/** A body that counts how often it was read from. */
function counted(bytes: Uint8Array) {
  const state = { pulls: 0 };
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        state.pulls++;
        controller.enqueue(bytes);
        controller.close();
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, state };
}

/** `bytes` as a streamed body (no content-length), signed by `member` at START. */
const sendStreamed = (app: Hono<AuthEnv>, method: string, url: string, bytes: Uint8Array) =>
  app.request(url, {
    method,
    headers: signRequest(member, method, url, bytes, START),
    body: counted(bytes).stream,
  });

const URL_ = "http://node/v1/echo";
const json = JSON.stringify({ hello: "world" });
const enc = new TextEncoder();

describe("authenticate", () => {
  test("a refused non-member is named on the node's log once per 10 minutes, at most 64 ids (defect 9)", async () => {
    const logger = memoryLogger();
    using t = makeApp({ logger });
    const ask = (who = outsider) =>
      t.app.request(URL_, {
        method: "POST",
        headers: signRequest(who, "POST", URL_, json, t.clock.now()),
        body: json,
      });
    expect((await ask()).status).toBe(403);
    expect((await ask()).status).toBe(403);
    const refused = () => logger.lines.filter((l) => l.includes("refused node"));
    expect(refused()).toEqual([
      `warn [test] refused node ${outsider.nodeId}: not a member here (to let it in: p2prc --cluster-add ${outsider.nodeId} on the cluster's host, or add it to trusted)`,
    ]);
    // a member is not logged; a flood of other ids adds at most 64 lines in the window
    expect((await ask(member)).status).toBe(200);
    for (let i = 0; i < 80; i++) await ask(generateIdentity());
    expect(refused().length).toBe(64);
    // after 10 minutes the same outsider is named again
    t.clock.advance(600_000);
    expect((await ask()).status).toBe(403);
    expect(refused().length).toBe(65);
  });

  test("a non-member is refused with 403 before its body is read", async () => {
    using t = makeApp();
    const { stream, state } = counted(enc.encode(json));
    const res = await t.app.request(URL_, {
      method: "POST",
      headers: signRequest(outsider, "POST", URL_, json, START),
      body: stream,
    });
    expect(res.status).toBe(403);
    expect(state.pulls).toBe(0);
  });

  test("a non-member leaves no state: the same request again is 403 again, not a replay", async () => {
    using t = makeApp();
    const headers = signRequest(outsider, "GET", URL_, "", START);
    for (let i = 0; i < 3; i++) expect((await t.app.request(URL_, { headers })).status).toBe(403);
  });

  test("a non-member's refusal is held refusalDelayMs before it is sent; a member's request is not (issue 12)", async () => {
    const holds: number[] = [];
    let release = () => {};
    using t = makeApp({
      refusalDelayMs: 250,
      holdRefusal: (ms) => {
        holds.push(ms);
        return new Promise((r) => {
          release = r;
        });
      },
    });
    let answered = false;
    const refused = Promise.resolve(
      t.app.request(URL_, { headers: signRequest(outsider, "GET", URL_, "", START) }),
    ).then((res) => {
      answered = true;
      return res;
    });
    await Bun.sleep(0);
    expect(holds).toEqual([250]);
    expect(answered).toBe(false);
    release();
    expect((await refused).status).toBe(403);
    const res = await t.app.request(URL_, {
      method: "POST",
      headers: signRequest(member, "POST", URL_, json, START),
      body: json,
    });
    expect(res.status).toBe(200);
    expect(holds).toEqual([250]);
  });

  test("a flood of non-members, forged ids and bad signatures keeps no nonce; a member's request keeps one", async () => {
    const nonces = new NonceCache(30_000);
    using t = makeApp({ nonces });
    const get = (headers: Record<string, string>) => t.app.request(URL_, { headers });
    for (let i = 0; i < 200; i++) {
      expect((await get(signRequest(outsider, "GET", URL_, "", START))).status).toBe(403);
      // a member's id claimed by someone else: the signature fails, nothing kept
      const forged = { ...signRequest(outsider, "GET", URL_, "", START), "x-p2prc-node": member.nodeId };
      expect((await get(forged)).status).toBe(401);
    }
    expect(nonces.size).toBe(0);
    const headers = signRequest(member, "GET", URL_, "", START);
    expect((await get(headers)).status).toBe(404); // through auth: no GET route here
    expect(nonces.size).toBe(1);
    expect((await get(headers)).status).toBe(401); // the replay
  });

  test("a full replay memory answers 429 (retryable) and keeps nothing more", async () => {
    const nonces = new NonceCache(30_000, 1);
    using t = makeApp({ nonces });
    const get = () => t.app.request(URL_, { headers: signRequest(member, "GET", URL_, "", START) });
    expect((await get()).status).toBe(404);
    const res = await get();
    expect(res.status).toBe(429);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain("retry later");
    expect(nonces.size).toBe(1);
  });

  test("a member's bad signature is 401 before its body is read", async () => {
    using t = makeApp();
    const { stream, state } = counted(enc.encode(json));
    const headers = { ...signRequest(member, "POST", URL_, json, START), "x-p2prc-nonce": "0".repeat(32) };
    const res = await t.app.request(URL_, { method: "POST", headers, body: stream });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain("bad signature");
    expect(state.pulls).toBe(0);
  });

  test("a request signed before the node started is 401 (retry with a fresh signature), even within the skew", async () => {
    using t = makeApp();
    t.clock.advance(500);
    const early = await t.app.request(URL_, {
      method: "POST",
      headers: signRequest(member, "POST", URL_, json, START - 1),
      body: json,
    });
    expect(early.status).toBe(401);
    expect(((await early.json()) as { error: { message: string } }).error.message).toContain(
      "signed before this node (re)started",
    );
    const fresh = await t.app.request(URL_, {
      method: "POST",
      headers: signRequest(member, "POST", URL_, json, START + 500),
      body: json,
    });
    expect(fresh.status).toBe(200);
  });

  test("a chunked body reaches the route; the caller is set; over the limit is 413", async () => {
    using t = makeApp();
    const { stream } = counted(enc.encode(json));
    const res = await t.app.request(URL_, {
      method: "POST",
      headers: signRequest(member, "POST", URL_, json, START),
      body: stream,
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      caller: { id: member.nodeId, admin: false, operator: false },
      body: { hello: "world" },
    });
    const big = new Uint8Array(1025);
    const over = await sendStreamed(t.app, "POST", URL_, big);
    expect(over.status).toBe(413);
  });

  test("an upload is spooled for the route and removed after it; a wrong hash is 401 and leaves nothing", async () => {
    using t = makeApp();
    const url = "http://node/v1/containers/abc/files?path=/tmp";
    const tar = new Uint8Array(2048).fill(7);
    const ok = await sendStreamed(t.app, "PUT", url, tar);
    expect(await ok.json()).toEqual({ spooled: 1 });
    expect(readdirSync(t.spoolDir)).toEqual([]);
    const bad = await t.app.request(url, {
      method: "PUT",
      headers: signRequest(member, "PUT", url, tar.subarray(1), START),
      body: tar,
    });
    expect(bad.status).toBe(401);
    expect(readdirSync(t.spoolDir)).toEqual([]);
    const big = new Uint8Array(4097);
    const over = await sendStreamed(t.app, "PUT", url, big);
    expect(over.status).toBe(413);
    expect(readdirSync(t.spoolDir)).toEqual([]);
  });
});

describe("the streamed push route", () => {
  const PUSH = "http://node/v1/images/push?image=a/b:1";
  const big = new Uint8Array(8192).fill(1); // over maxBodyBytes: the route reads it, not the middleware

  test("signed as STREAMED_BODY_SHA256 it reaches the route unread; signed with its real hash it is 401", async () => {
    using t = makeApp();
    t.app.post("/v1/images/push", async (c) => c.json({ read: (await c.req.arrayBuffer()).byteLength }));
    const streamed = signRequestHash(member, "POST", PUSH, STREAMED_BODY_SHA256, START);
    const ok = await t.app.request(PUSH, { method: "POST", headers: streamed, body: counted(big).stream });
    expect(await ok.json()).toEqual({ read: 8192 });
    const hashed = await t.app.request(PUSH, {
      method: "POST",
      headers: signRequest(member, "POST", PUSH, big, START),
      body: big,
    });
    expect(hashed.status).toBe(401);
    // the marker opens no other route
    const other = await t.app.request(URL_, {
      method: "POST",
      headers: signRequestHash(member, "POST", URL_, STREAMED_BODY_SHA256, START),
      body: json,
    });
    expect(other.status).toBe(401);
  });

  test("a non-member's push is 403 with its body unread", async () => {
    using t = makeApp();
    const { stream, state } = counted(big);
    const headers = signRequestHash(outsider, "POST", PUSH, STREAMED_BODY_SHA256, START);
    expect((await t.app.request(PUSH, { method: "POST", headers, body: stream })).status).toBe(403);
    expect(state.pulls).toBe(0);
  });
});

describe("upload slots", () => {
  test("one at a time with one waiting: a third is 429; a slot freed by a failed upload passes on", async () => {
    using t = makeApp({ uploadsPerNode: 1, uploadQueuePerNode: 1 });
    const url = "http://node/v1/containers/abc/files?path=/tmp";
    const hanging = () => {
      let fail: (err: Error) => void = () => {};
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(10));
          fail = (err) => controller.error(err);
        },
      });
      const res = Promise.resolve(
        t.app.request(url, {
          method: "PUT",
          headers: signRequest(member, "PUT", url, "x", START),
          body: stream,
        }),
      );
      return { res, fail };
    };
    const a = hanging();
    const b = hanging();
    const third = await t.app.request(url, {
      method: "PUT",
      headers: signRequest(member, "PUT", url, "x", START),
      body: "x",
    });
    expect(third.status).toBe(429);
    // a's spool file appears once its request is past the checks (asynchronously); b's never while a holds the slot
    for (let i = 0; i < 200 && readdirSync(t.spoolDir).length === 0; i++) await Bun.sleep(10);
    await Bun.sleep(50);
    expect(readdirSync(t.spoolDir).length).toBe(1); // b waits, unread
    a.fail(new Error("client gone"));
    await a.res.catch(() => undefined);
    await Bun.sleep(50);
    expect(readdirSync(t.spoolDir).length).toBe(1); // b spools now
    b.fail(new Error("client gone"));
    await b.res.catch(() => undefined);
    expect(readdirSync(t.spoolDir)).toEqual([]);
    // the operator's own key is not bound
    const own = await t.app.request(url, {
      method: "PUT",
      headers: signRequest(self, "PUT", url, "x", START),
      body: "x",
    });
    expect(own.status).toBe(200);
  });
});

describe("request MACs", () => {
  const macHeaders = (from = member, body = json, to = self.nodeId, at = START) =>
    macRequestHash(from, "POST", URL_, sha256Hex(body), at, to);
  const post = (t: ReturnType<typeof makeApp>, headers: Record<string, string>, body = json) =>
    t.app.request(URL_, { method: "POST", headers, body });
  const reason = async (res: Response) =>
    ((await res.json()) as { error: { message: string } }).error.message;

  test("a member's signed request addressed to this node is told it may send MACs; one not addressed is not", async () => {
    using t = makeApp();
    const addressed = await post(t, signRequest(member, "POST", URL_, json, START, self.nodeId));
    expect(addressed.status).toBe(200);
    expect(addressed.headers.get(AUTH_HEADERS.accepts)).toBe(MAC_V1);
    const unaddressed = await post(t, signRequest(member, "POST", URL_, json, START));
    expect(unaddressed.status).toBe(200);
    expect(unaddressed.headers.get(AUTH_HEADERS.accepts)).toBeNull();
  });

  test("a member's MAC is taken: the caller is set and its nonce kept (the same request again is a replay)", async () => {
    const nonces = new NonceCache(30_000);
    using t = makeApp({ nonces });
    const headers = macHeaders();
    const res = await post(t, headers);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { caller: { id: string } }).caller.id).toBe(member.nodeId);
    expect(res.headers.get(AUTH_HEADERS.accepts)).toBeNull(); // told once, on a signed answer
    expect(nonces.size).toBe(1);
    const again = await post(t, headers);
    expect(again.status).toBe(401);
    expect(await reason(again)).toContain("replay");
  });

  test("a MAC under another key (a member's id claimed by someone else) is 401 before the body is read; nothing kept", async () => {
    const nonces = new NonceCache(30_000);
    using t = makeApp({ nonces });
    // the outsider's own key with this node, under the member's name
    const forged = { ...macHeaders(outsider), [AUTH_HEADERS.node]: member.nodeId };
    const { stream, state } = counted(enc.encode(json));
    const res = await t.app.request(URL_, { method: "POST", headers: forged, body: stream });
    expect(res.status).toBe(401);
    expect(await reason(res)).toContain("bad MAC");
    expect(state.pulls).toBe(0);
    expect(nonces.size).toBe(0);
    // and a MAC over other content: the nonce changed after it was made
    const changed = { ...macHeaders(), [AUTH_HEADERS.nonce]: "0".repeat(32) };
    expect((await post(t, changed)).status).toBe(401);
  });

  test("a non-member's MAC is 403: no key is computed for it", async () => {
    const asked: string[] = [];
    using t = makeApp({
      requestKey: (id) => {
        asked.push(id);
        return self.requestKey(id, "in");
      },
    });
    expect((await post(t, macHeaders(outsider))).status).toBe(403);
    expect(asked).toEqual([]);
    expect((await post(t, macHeaders())).status).toBe(200);
    expect(asked).toEqual([member.nodeId]);
  });

  test("a MAC for another node, without x-p2prc-to, beside a signature, or over another body is 401", async () => {
    using t = makeApp();
    const other = generateIdentity();
    const forOther = await post(t, macHeaders(member, json, other.nodeId));
    expect(forOther.status).toBe(401);
    expect(await reason(forOther)).toContain("addressed to another node");
    const { [AUTH_HEADERS.to]: _to, ...noTo } = macHeaders();
    const unaddressed = await post(t, noTo);
    expect(unaddressed.status).toBe(401);
    expect(await reason(unaddressed)).toContain(AUTH_HEADERS.to);
    const both = {
      ...signRequest(member, "POST", URL_, json, START, self.nodeId),
      [AUTH_HEADERS.mac]: macHeaders()[AUTH_HEADERS.mac] as string,
    };
    expect(await reason(await post(t, both))).toContain("not both");
    const otherBody = await post(t, macHeaders(), JSON.stringify({ hello: "mallory" }));
    expect(otherBody.status).toBe(401);
    expect(await reason(otherBody)).toContain("does not match its signed hash");
    const malformed = await post(t, { ...macHeaders(), [AUTH_HEADERS.mac]: "zz" });
    expect(await reason(malformed)).toContain("64 hex");
  });

  test("a node without request keys takes signatures only and says nothing of MACs", async () => {
    using t = makeApp({ requestKey: undefined });
    const mac = await post(t, macHeaders());
    expect(mac.status).toBe(401);
    expect(await reason(mac)).toContain("signed requests only");
    const signed = await post(t, signRequest(member, "POST", URL_, json, START, self.nodeId));
    expect(signed.status).toBe(200);
    expect(signed.headers.get(AUTH_HEADERS.accepts)).toBeNull();
  });

  test("a member whose id gives no key (a low-order point, on an open network) is 401, not a 500", async () => {
    using t = makeApp({ isMember: () => true });
    const lowOrder = "00".repeat(32);
    const headers = { ...macHeaders(), [AUTH_HEADERS.node]: lowOrder };
    const res = await post(t, headers);
    expect(res.status).toBe(401);
    expect(await reason(res)).toContain("no request key");
  });
});
