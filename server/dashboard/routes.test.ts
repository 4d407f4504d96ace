// The dashboard's doors in-process, on a manual clock: nothing answers without a session, a login token
// works once and not after it expires, a session ends, a state-changing request needs the same origin and
// the session's CSRF token, and /metrics needs its scrape token (or loopback).
import { describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { ManualClock, memoryLogger, P2prcError } from "../../core/index.ts";
import type { PeerView } from "../../p2p/index.ts";
import { parsePrometheusText, sampleValue } from "../../test/prometheus-text.ts";
import { errorResponse } from "../http/errors.ts";
import type { ContainerView } from "../types.ts";
import { metricsRoutes, tokenRoutes } from "./access.ts";
import { UiAuth } from "./auth.ts";
import { NodeMetrics } from "./metrics.ts";
import { dashboardRoutes } from "./routes.ts";
import type { DashboardSource } from "./types.ts";

const SELF = "a".repeat(64);
const ORIGIN = "http://127.0.0.1:8088";

const container: ContainerView = {
  id: "c".repeat(64),
  name: "p2prc-test",
  image: "busybox",
  owner: SELF,
  state: "running",
  running: true,
  createdAt: new Date(0).toISOString(),
  expiresAt: new Date(3600_000).toISOString(),
  cpus: 1,
  memoryMb: 64,
  gpu: false,
  ports: [],
};

function setup(o: { engineDown?: boolean; closing?: AbortSignal } = {}) {
  const clock = new ManualClock(1_000_000);
  const auth = new UiAuth({ clock, tokenTtlMs: 60_000, sessionTtlMs: 600_000 });
  const removed: string[] = [];
  const peer = {
    id: SELF,
    name: "self",
    self: true,
    state: "alive",
    offer: {},
    relays: [],
  } as unknown as PeerView;
  const source: DashboardSource = {
    self: async () => ({
      id: SELF,
      name: "self",
      version: "0",
      address: ORIGIN,
      reach: "direct",
      relays: [],
      engine: { ok: true, detail: "fake" },
      startedAt: 0,
    }),
    peers: () => [peer],
    containers: async () => {
      if (o.engineDown) throw new P2prcError("E_ENGINE_UNAVAILABLE", "engine unreachable: connect ENOENT");
      return removed.length ? [] : [container];
    },
    logs: async (id) => {
      if (id !== container.id) throw new P2prcError("E_NOT_FOUND", `no container ${id}`);
      return new Response("one\ntwo\n").body as ReadableStream<Uint8Array>;
    },
    removeContainer: async (id) => {
      removed.push(id);
    },
    renewLease: async () => container,
    batches: () => [],
    clusters: () => [],
    addMember: () => {},
    removeMember: () => {},
  };
  const app = new Hono()
    .route(
      "/ui",
      dashboardRoutes({
        source,
        auth,
        clock,
        logger: memoryLogger(),
        nodeId: SELF,
        nodeName: "self",
        pollMs: 50,
        closing: o.closing,
      }),
    )
    .route("/v1/ui", tokenRoutes(auth));
  app.onError((err, c) => errorResponse(c, err));
  const get = (path: string, cookie?: string) =>
    app.request(`${ORIGIN}${path}`, { headers: cookie ? { cookie } : {} });
  const login = async () => {
    const res = await get(`/ui/login?token=${auth.mintToken().token}`);
    expect(res.status).toBe(303);
    const set = res.headers.get("set-cookie") ?? "";
    return { cookie: set.split(";")[0] as string, set };
  };
  const csrfOf = async (cookie: string) => {
    const page = await (await get("/ui/containers", cookie)).text();
    return /name="_csrf" value="([0-9a-f]+)"/.exec(page)?.[1] ?? "";
  };
  const post = (path: string, cookie: string, form: Record<string, string>, origin = ORIGIN) =>
    app.request(`${ORIGIN}${path}`, {
      method: "POST",
      headers: { cookie, origin, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(form).toString(),
    });
  return { clock, auth, app, get, post, login, csrfOf, removed };
}

const GUARDED = [
  "/ui",
  "/ui/nodes",
  "/ui/containers",
  "/ui/batches",
  "/ui/clusters",
  `/ui/containers/${"c".repeat(64)}`,
  `/ui/containers/${"c".repeat(64)}/logs`,
  "/ui/events/overview",
  "/ui/events/nodes",
  "/ui/batches/x/image.png",
  "/ui/assets/app.js",
];

describe("the dashboard's doors", () => {
  test("without a session every page, stream and asset is refused (401), and every action", async () => {
    const { get, post } = setup();
    for (const path of GUARDED)
      expect({ path, status: (await get(path)).status }).toEqual({ path, status: 401 });
    const forged = "p2prc_ui_aaaaaaaaaaaa=not-a-session";
    for (const path of GUARDED)
      expect({ path, status: (await get(path, forged)).status }).toEqual({ path, status: 401 });
    const res = await post(`/ui/containers/${"c".repeat(64)}/remove`, "", { _csrf: "x" });
    expect(res.status).toBe(401);
  });

  test("a login token opens an HttpOnly, SameSite=Strict session once; used again it is refused", async () => {
    const { get, auth } = setup();
    const { token } = auth.mintToken();
    const first = await get(`/ui/login?token=${token}`);
    expect(first.status).toBe(303);
    const set = first.headers.get("set-cookie") ?? "";
    expect(set).toContain("HttpOnly");
    expect(set).toContain("SameSite=Strict");
    expect(set).toContain("Path=/ui");
    expect(set).toMatch(/Max-Age=600\b/);
    expect(first.headers.get("referrer-policy")).toBe("no-referrer");
    const cookie = set.split(";")[0] as string;
    expect((await get("/ui", cookie)).status).toBe(200);
    expect((await get(`/ui/login?token=${token}`)).status).toBe(401);
    expect((await get("/ui/login?token=")).status).toBe(401);
    expect((await get(`/ui/login?token=${"0".repeat(64)}`)).status).toBe(401);
  });

  test("an expired token is refused, and a session ends at its expiry", async () => {
    const { get, auth, clock, login } = setup();
    const { token } = auth.mintToken();
    clock.advance(60_001);
    expect((await get(`/ui/login?token=${token}`)).status).toBe(401);
    const { cookie } = await login();
    expect((await get("/ui/nodes", cookie)).status).toBe(200);
    clock.advance(600_001);
    expect((await get("/ui/nodes", cookie)).status).toBe(401);
  });

  test("a cross-site POST, or one without the session's CSRF token, is refused; the real form works", async () => {
    const { post, login, csrfOf, removed } = setup();
    const { cookie } = await login();
    const csrf = await csrfOf(cookie);
    expect(csrf).toMatch(/^[0-9a-f]{64}$/);
    const path = `/ui/containers/${"c".repeat(64)}/remove`;
    expect((await post(path, cookie, { _csrf: csrf }, "http://evil.example")).status).toBe(403);
    expect((await post(path, cookie, {})).status).toBe(403);
    expect((await post(path, cookie, { _csrf: "0".repeat(64) })).status).toBe(403);
    expect(removed).toEqual([]);
    const ok = await post(path, cookie, { _csrf: csrf });
    expect(ok.status).toBe(303);
    expect(removed).toEqual(["c".repeat(64)]);
  });

  test("a container's log stream sends its lines as events; an unknown container is a plain 404", async () => {
    const { get, login } = setup();
    const { cookie } = await login();
    const res = await get(`/ui/containers/${"c".repeat(64)}/logs`, cookie);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const body = await res.text();
    expect(body).toContain("event: line\ndata: one\n");
    expect(body).toContain("event: line\ndata: two\n");
    expect(body).toContain("event: end");
    expect((await get(`/ui/containers/${"d".repeat(64)}/logs`, cookie)).status).toBe(404);
  });

  test("a live page gets its sections as events, and its stream ends when the node stops", async () => {
    const closing = new AbortController();
    const { get, login } = setup({ closing: closing.signal });
    const { cookie } = await login();
    const res = await get("/ui/events/overview", cookie);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain("event: section");
    expect(first).toContain('"id":"self"');
    closing.abort();
    const began = Date.now();
    while (!(await reader.read()).done) {}
    expect(Date.now() - began).toBeLessThan(1000);
  });

  test("with the engine down the pages still render and say so", async () => {
    const { get, login } = setup({ engineDown: true });
    const { cookie } = await login();
    const overview = await get("/ui", cookie);
    expect(overview.status).toBe(200);
    expect(await overview.text()).toContain('data-count="containers">0<');
    expect(await (await get("/ui/containers", cookie)).text()).toContain("The engine does not answer");
  });

  test("the login link route answers the node's own key only", async () => {
    const { auth } = setup();
    const op = new Hono<{ Variables: { caller?: { id: string; admin: boolean; operator: boolean } } }>();
    op.use("*", async (c, next) => {
      c.set("caller", { id: "b".repeat(64), admin: true, operator: c.req.header("x-op") === "1" });
      await next();
    });
    op.route("/v1/ui", tokenRoutes(auth));
    op.onError((err, c) => errorResponse(c, err));
    expect((await op.request(`${ORIGIN}/v1/ui/token`, { method: "POST" })).status).toBe(403);
    const res = await op.request(`${ORIGIN}/v1/ui/token`, { method: "POST", headers: { "x-op": "1" } });
    expect(res.status).toBe(200);
    const { url } = (await res.json()) as { url: string };
    expect(url).toMatch(new RegExp(`^${ORIGIN}/ui/login\\?token=[0-9a-f]{64}$`));
  });
});

describe("/metrics", () => {
  const metrics = () =>
    new NodeMetrics({
      version: "9.9.9",
      peerStates: () => ["alive", "alive", "suspect"],
      containerStates: async () => ["running", "running", "exited"],
      batchTaskStates: () => ["done", "running", "pending", "pending"],
      gossip: () => ({ rounds: 7, bytesSent: 100, bytesReceived: 50 }),
    });
  const app = (token: string, address: string) => {
    const m = metrics();
    m.request({ method: "GET", route: "/v1/health", status: 200, seconds: 0.002 });
    m.request({ method: "BREW", route: "unmatched", status: 404, seconds: 0.001 });
    m.containerStarted(0.4);
    m.engineError("create");
    const a = new Hono().route(
      "/metrics",
      metricsRoutes({ metrics: m, token, remoteAddress: () => address }),
    );
    a.onError((err, c) => errorResponse(c, err));
    return a;
  };

  test("parses strictly and says what the node's state says", async () => {
    const res = await app("", "127.0.0.1").request("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const f = parsePrometheusText(await res.text());
    expect(sampleValue(f, "p2prc_build_info", { version: "9.9.9" })).toBe(1);
    expect(sampleValue(f, "p2prc_peers", { state: "alive" })).toBe(2);
    expect(sampleValue(f, "p2prc_peers", { state: "dead" })).toBe(0);
    expect(sampleValue(f, "p2prc_containers", { state: "running" })).toBe(2);
    expect(sampleValue(f, "p2prc_containers", { state: "exited" })).toBe(1);
    expect(sampleValue(f, "p2prc_batch_tasks", { state: "pending" })).toBe(2);
    expect(sampleValue(f, "p2prc_gossip_rounds_total")).toBe(7);
    expect(sampleValue(f, "p2prc_gossip_bytes_total", { direction: "sent" })).toBe(100);
    expect(sampleValue(f, "p2prc_http_requests_total", { route: "/v1/health", status: "200" })).toBe(1);
    expect(sampleValue(f, "p2prc_http_requests_total", { method: "other", route: "unmatched" })).toBe(1);
    expect(sampleValue(f, "p2prc_container_start_duration_seconds_count")).toBe(1);
    expect(sampleValue(f, "p2prc_engine_errors_total", { operation: "create" })).toBe(1);
    expect(f.get("p2prc_containers")?.type).toBe("gauge");
    expect(f.get("p2prc_container_start_duration_seconds")?.type).toBe("histogram");
  });

  test("with a token: only a scrape that brings it; without one: loopback only", async () => {
    const token = "scrape-token-0123456789";
    expect((await app(token, "127.0.0.1").request("/metrics")).status).toBe(401);
    const bad = { headers: { authorization: "Bearer wrong-token-0123456789" } };
    expect((await app(token, "10.0.0.9").request("/metrics", bad)).status).toBe(401);
    const good = { headers: { authorization: `Bearer ${token}` } };
    expect((await app(token, "10.0.0.9").request("/metrics", good)).status).toBe(200);
    expect((await app("", "10.0.0.9").request("/metrics")).status).toBe(403);
    expect((await app("", "::1").request("/metrics")).status).toBe(200);
    expect((await app("", "::ffff:127.0.0.1").request("/metrics")).status).toBe(200);
  });

  test("the strict parser refuses what the format does not allow", () => {
    expect(() => parsePrometheusText("x_total 1\n")).toThrow("without a TYPE");
    expect(() => parsePrometheusText("# TYPE x counter\nx 1\n")).toThrow("_total");
    expect(() => parsePrometheusText('# TYPE x gauge\nx{a="1} 1\n')).toThrow();
    expect(() => parsePrometheusText('# TYPE x gauge\nx{a="1"} 1\nx{a="1"} 2\n')).toThrow("twice");
    expect(() =>
      parsePrometheusText('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n'),
    ).toThrow("cumulative");
  });
});
