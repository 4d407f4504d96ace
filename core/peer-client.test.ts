import { describe, expect, test } from "bun:test";
import { ManualClock } from "./clock.ts";
import { isP2prcError, P2prcError } from "./errors.ts";
import { generateIdentity } from "./identity.ts";
import { fetchTransport, type NodeRef, type NodeTransport, nodeOfUrl, PeerClient } from "./peer-client.ts";
import { AUTH_HEADERS, MAC_V1, parseSignedHeaders, verifyMacHeaders, verifyRequest } from "./signing.ts";

const alice = generateIdentity();
const bob = generateIdentity();
const node: NodeRef = { address: { host: "10.0.0.7", port: 8088 }, id: bob.nodeId };

interface Sent {
  node: NodeRef;
  path: string;
  init: RequestInit;
}

/** A transport that records what it is given and answers `reply` (default: 200 `{}`). */
function recorder(reply: () => Response | Promise<Response> = () => Response.json({})) {
  const sent: Sent[] = [];
  const transport: NodeTransport = {
    send: async (n, path, init) => {
      sent.push({ node: n, path, init });
      return reply();
    },
  };
  return { sent, transport };
}

/** A transport that never answers: it rejects when the request's signal aborts. */
const hanging: NodeTransport = {
  send: (_n, _p, init) =>
    new Promise((_, reject) => {
      init.signal?.addEventListener("abort", () => reject(init.signal?.reason), { once: true });
    }),
};

/** The server's check of a request the client sent, at the server's time `now`. */
function serverCheck(s: Sent, now: number, selfId?: string) {
  const headers = s.init.headers as Record<string, string>;
  return verifyRequest({
    method: s.init.method ?? "GET",
    url: `http://10.0.0.7:8088${s.path}`,
    headers: (h) => headers[h],
    body: (s.init.body as string | Uint8Array | undefined) ?? "",
    now,
    skewMs: 30_000,
    selfId,
  });
}

async function failure(p: Promise<unknown>): Promise<P2prcError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof P2prcError) return err;
    throw err;
  }
  throw new Error("expected a rejection");
}

describe("signing", () => {
  test("signs with the injected clock: the server's check accepts it at that time, not 10 min later", async () => {
    const clock = new ManualClock(1_800_000_000_000);
    const { sent, transport } = recorder();
    const peer = new PeerClient({ identity: alice, clock, transport });
    await peer.request(node, "/v1/containers?b=2&a=1", { method: "POST", json: { image: "busybox" } });
    const s = sent[0] as Sent;
    const headers = s.init.headers as Record<string, string>;
    expect(headers[AUTH_HEADERS.timestamp]).toBe(String(clock.now()));
    expect(headers["content-type"]).toBe("application/json");
    const ok = serverCheck(s, clock.now(), bob.nodeId);
    expect(ok.ok && ok.nodeId).toBe(alice.nodeId);
    const skewed = serverCheck(s, clock.now() + 10 * 60_000, bob.nodeId);
    expect(skewed.ok).toBe(false);
    if (!skewed.ok) expect(skewed.reason).toContain("timestamp");
  });

  test("binds the request to the node's id: another node refuses it; without an id nothing is bound", async () => {
    const clock = new ManualClock();
    const { sent, transport } = recorder();
    const peer = new PeerClient({ identity: alice, clock, transport });
    await peer.request(node, "/v1/specs");
    const bound = sent[0] as Sent;
    expect((bound.init.headers as Record<string, string>)[AUTH_HEADERS.to]).toBe(bob.nodeId);
    expect(serverCheck(bound, clock.now(), bob.nodeId).ok).toBe(true);
    const elsewhere = serverCheck(bound, clock.now(), generateIdentity().nodeId);
    expect(elsewhere.ok).toBe(false);

    await peer.request({ address: node.address }, "/v1/specs");
    const unbound = sent[1] as Sent;
    expect((unbound.init.headers as Record<string, string>)[AUTH_HEADERS.to]).toBeUndefined();
    expect(serverCheck(unbound, clock.now(), generateIdentity().nodeId).ok).toBe(true);
  });

  test("without an identity, requests go unsigned", async () => {
    const { sent, transport } = recorder();
    await new PeerClient({ clock: new ManualClock(), transport }).request(node, "/v1/health");
    expect((sent[0] as Sent).init.headers).toEqual({});
  });
});

describe("request MACs", () => {
  /**
   * Bob as a server would check what the client sent (a signature, or a MAC under his key with alice) and
   * answer: `says` adds `x-p2prc-auth: mac-v1` to a good signed request's answer; `refuseMacs` 401s a MAC.
   */
  function bobServer(o: { says: boolean; refuseMacs?: () => boolean }) {
    const seen: ("signed" | "mac" | "bad")[] = [];
    const { sent, transport } = recorder();
    const checking: NodeTransport = {
      send: async (n, path, init) => {
        await transport.send(n, path, init);
        const headers = init.headers as Record<string, string>;
        const parsed = parseSignedHeaders({ headers: (h) => headers[h], now: 1_000, skewMs: 30_000 });
        if (!parsed.ok) throw new Error(parsed.reason);
        const url = `http://10.0.0.7:8088${path}`;
        if (parsed.value.mac !== undefined) {
          if (o.refuseMacs?.())
            return Response.json({ error: { code: "E_UNAUTHORIZED", message: "bad MAC" } }, { status: 401 });
          const key = bob.requestKey(parsed.value.nodeId, "in");
          const ok = verifyMacHeaders(parsed.value, {
            method: init.method ?? "GET",
            url,
            key,
            selfId: bob.nodeId,
          }).ok;
          seen.push(ok ? "mac" : "bad");
          return Response.json({});
        }
        const ok = serverCheck({ node: n, path, init }, 1_000, bob.nodeId).ok;
        seen.push(ok ? "signed" : "bad");
        return Response.json({}, { headers: o.says && ok ? { [AUTH_HEADERS.accepts]: MAC_V1 } : {} });
      },
    };
    return {
      seen,
      sent,
      client: new PeerClient({ identity: alice, clock: new ManualClock(1_000), transport: checking }),
    };
  }

  test("signed until the node says it takes MACs, then MACs it checks under the two nodes' key", async () => {
    const bob = bobServer({ says: true });
    for (let i = 0; i < 3; i++) await bob.client.request(node, "/v1/specs");
    await bob.client.request(node, "/v1/echo", { method: "POST", json: { n: 1 } });
    expect(bob.seen).toEqual(["signed", "mac", "mac", "mac"]);
    const last = bob.sent.at(-1)?.init.headers as Record<string, string>;
    expect(last[AUTH_HEADERS.signature]).toBeUndefined();
    expect(last[AUTH_HEADERS.to]).toBe(node.id as string);
  });

  test("a node that never says so, or whose id is unknown, gets signatures only", async () => {
    const silent = bobServer({ says: false });
    for (let i = 0; i < 3; i++) await silent.client.request(node, "/v1/specs");
    expect(silent.seen).toEqual(["signed", "signed", "signed"]);
    const { sent, transport } = recorder(() =>
      Response.json({}, { headers: { [AUTH_HEADERS.accepts]: MAC_V1 } }),
    );
    const client = new PeerClient({ identity: alice, clock: new ManualClock(1_000), transport });
    const anonymous: NodeRef = { address: node.address };
    for (let i = 0; i < 2; i++) await client.request(anonymous, "/v1/specs");
    expect(sent.map((s) => (s.init.headers as Record<string, string>)[AUTH_HEADERS.mac])).toEqual([
      undefined,
      undefined,
    ]);
  });

  test("a MAC refused (401) is sent again signed, once, and the node is signed to until it says so again", async () => {
    let refuse = true;
    const bob = bobServer({ says: true, refuseMacs: () => refuse });
    await bob.client.request(node, "/v1/specs"); // signed; told
    const res = await bob.client.request(node, "/v1/echo", { method: "POST", json: { n: 2 } });
    expect(res.status).toBe(200);
    // the refused MAC is not in `seen` (refused before the check): then the same request signed
    expect(bob.seen).toEqual(["signed", "signed"]);
    expect(bob.sent.map((s) => s.path)).toEqual(["/v1/specs", "/v1/echo", "/v1/echo"]);
    refuse = false;
    await bob.client.request(node, "/v1/specs");
    expect(bob.seen).toEqual(["signed", "signed", "mac"]);
  });
});

describe("the transport", () => {
  test("receives the node and the path, never a URL", async () => {
    const { sent, transport } = recorder();
    const peer = new PeerClient({ identity: alice, clock: new ManualClock(), transport });
    const v6: NodeRef = { address: { host: "fe80::1", port: 9000 }, id: bob.nodeId, cert: "PEM", tls: true };
    await peer.request(v6, "/v1/specs?x=1");
    expect(sent[0]?.node).toEqual(v6);
    expect(sent[0]?.path).toBe("/v1/specs?x=1");
  });

  test("fetchTransport writes the node's URL: the scheme its record says, IPv6 in brackets", async () => {
    const urls: string[] = [];
    const t = fetchTransport((async (url: string) => {
      urls.push(url);
      return new Response("ok");
    }) as typeof fetch);
    await t.send({ address: { host: "::1", port: 8088 }, tls: true }, "/v1/health", {});
    await t.send({ address: { host: "10.0.0.7", port: 80 } }, "/a?b=1", {});
    expect(urls).toEqual(["https://[::1]:8088/v1/health", "http://10.0.0.7:80/a?b=1"]);
  });

  test("nodeOfUrl: the address, the scheme as tls, the path with its query; a bad URL is E_INVALID", () => {
    expect(nodeOfUrl("https://[::1]:9000/v1/x?y=1", { id: bob.nodeId })).toEqual({
      node: { address: { host: "::1", port: 9000 }, tls: true, id: bob.nodeId },
      path: "/v1/x?y=1",
    });
    expect(nodeOfUrl("http://h").node.address).toEqual({ host: "h", port: 80 });
    expect(() => nodeOfUrl("not a url")).toThrow(P2prcError);
  });
});

describe("failures are coded", () => {
  test("no answer in time → E_NODE_UNREACHABLE, retryable, naming the node", async () => {
    const peer = new PeerClient({
      identity: alice,
      clock: new ManualClock(),
      transport: hanging,
      timeoutMs: 30,
    });
    const err = await failure(peer.request(node, "/v1/specs"));
    expect(err.code).toBe("E_NODE_UNREACHABLE");
    expect(err.retryable).toBe(true);
    expect(err.message).toBe("cannot reach node 10.0.0.7:8088: no answer in time");
  });

  test("a per-request timeout overrides the client's", async () => {
    const peer = new PeerClient({ clock: new ManualClock(), transport: hanging, timeoutMs: 60_000 });
    const t0 = performance.now();
    await failure(peer.request(node, "/v1/specs", { timeoutMs: 30 }));
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  test("the caller's own abort rejects with its reason, not as an unreachable node", async () => {
    const peer = new PeerClient({ clock: new ManualClock(), transport: hanging });
    const ctl = new AbortController();
    const p = peer.request(node, "/v1/specs", { signal: ctl.signal });
    ctl.abort(new Error("stopping"));
    const err = await p.catch((e: unknown) => e);
    expect(isP2prcError(err)).toBe(false);
    expect((err as Error).message).toBe("stopping");
  });

  test("a network failure → E_NODE_UNREACHABLE, retryable; a transport's own coded error keeps its hint", async () => {
    const refused: NodeTransport = { send: () => Promise.reject(new TypeError("connection refused")) };
    const peer = new PeerClient({ clock: new ManualClock(), transport: refused });
    const err = await failure(peer.request(node, "/v1/specs"));
    expect(err).toMatchObject({ code: "E_NODE_UNREACHABLE", retryable: true });
    expect(err.message).toBe("cannot reach node 10.0.0.7:8088: connection refused");

    const plain = new P2prcError("E_NODE_UNREACHABLE", "serves plain HTTP", { hint: "run it with TLS" });
    const refusing: NodeTransport = { send: () => Promise.reject(plain) };
    const coded = await failure(
      new PeerClient({ clock: new ManualClock(), transport: refusing }).request(node, "/"),
    );
    expect(coded).toMatchObject({ code: "E_NODE_UNREACHABLE", hint: "run it with TLS" });
    expect(coded.message).toBe("cannot reach node 10.0.0.7:8088: serves plain HTTP");
  });

  const answer = (status: number, body: unknown) => () =>
    typeof body === "string" ? new Response(body, { status }) : Response.json(body, { status });
  const replyOf = (status: number, body: unknown) => {
    const { transport } = recorder(answer(status, body));
    return failure(new PeerClient({ clock: new ManualClock(), transport }).request(node, "/v1/p2p/exchange"));
  };

  test("an error answer keeps the node's code, message and field; not retryable", async () => {
    const err = await replyOf(400, {
      error: { code: "E_INVALID", message: "from: required", field: "from" },
    });
    expect(err).toMatchObject({ code: "E_INVALID", field: "from", retryable: false, hint: undefined });
    expect(err.message).toBe("node 10.0.0.7:8088: from: required");
  });

  test("5xx and 429 are retryable", async () => {
    expect(
      await replyOf(503, { error: { code: "E_ENGINE_UNAVAILABLE", message: "no engine" } }),
    ).toMatchObject({
      code: "E_ENGINE_UNAVAILABLE",
      retryable: true,
    });
    expect(await replyOf(429, { error: { code: "E_RATE_LIMIT", message: "slow down" } })).toMatchObject({
      code: "E_RATE_LIMIT",
      retryable: true,
    });
  });

  test("403 'not a member' carries the hint; a body that names no code is coded by its status", async () => {
    const forbidden = await replyOf(403, {
      error: { code: "E_FORBIDDEN", message: "node 1234… is not a member of this node's cluster" },
    });
    expect(forbidden.code).toBe("E_FORBIDDEN");
    expect(forbidden.hint).toContain("trusted list");
    // a node that uses a cluster lets members in through it: the hint names the way in
    expect(forbidden.hint).toContain("--cluster-add");
    expect(await replyOf(404, "no such page")).toMatchObject({
      code: "E_NOT_FOUND",
      message: "node 10.0.0.7:8088 answered 404",
    });
    expect(await replyOf(502, "bad gateway")).toMatchObject({ code: "E_NODE_UNREACHABLE", retryable: true });
  });
});

describe("fetchFor (what hono's hc calls)", () => {
  test("keeps the URL's path and query, sends to the node, and signs the body", async () => {
    const clock = new ManualClock();
    const { sent, transport } = recorder();
    const f = new PeerClient({ identity: alice, clock, transport }).fetchFor(node);
    const res = await f("http://ignored/v1/containers/abc/exec?x=1", {
      method: "POST",
      headers: new Headers({ "content-type": "application/json" }),
      body: JSON.stringify({ command: ["true"] }),
    });
    expect(res.status).toBe(200);
    const s = sent[0] as Sent;
    expect(s.node).toBe(node);
    expect(s.path).toBe("/v1/containers/abc/exec?x=1");
    expect((s.init.headers as Record<string, string>)["content-type"]).toBe("application/json");
    expect(serverCheck(s, clock.now(), bob.nodeId).ok).toBe(true);
  });

  test("an error answer throws the coded error (hc never sees an error status)", async () => {
    const { transport } = recorder(() =>
      Response.json({ error: { code: "E_NOT_FOUND", message: "gone" } }, { status: 404 }),
    );
    const f = new PeerClient({ clock: new ManualClock(), transport }).fetchFor(node);
    expect((await failure(f("http://node/v1/containers/x"))).code).toBe("E_NOT_FOUND");
  });
});
