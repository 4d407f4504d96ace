// PeerTransport against real local servers: TLS pinned to a known certificate, trust on first use bound to
// the node's signed identity, interception and impersonation refused, plain HTTP only when allowed.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  generateIdentity,
  type Identity,
  isP2prcError,
  loadOrCreateTlsCertificate,
  ManualClock,
  PeerClient,
  type TlsMaterial,
} from "../core/index.ts";
import { signedRecord } from "./fixtures.ts";
import { PeerTransport } from "./transport.ts";
import type { SignedRecord } from "./types.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-transport-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let certA: TlsMaterial;
let certB: TlsMaterial;
let node: Identity;
let stranger: Identity;

beforeAll(async () => {
  certA = await loadOrCreateTlsCertificate(join(root, "a"), "node-a");
  certB = await loadOrCreateTlsCertificate(join(root, "b"), "node-b");
  node = generateIdentity();
  stranger = generateIdentity();
});

/** `who`'s record naming `cert` (none when undefined), signed by `signer` (who, unless forging). */
const recordWithCert = (who: Identity, cert: string | undefined, signer: Identity = who): SignedRecord =>
  signedRecord(who, cert ? { cert } : {}, signer);

interface TestServer {
  port: number;
  /** Requests to /v1/identity. */
  identityHits: number;
  /** Requests to any other path: [protocol, path]. */
  calls: [string, string][];
}

const running: { stop(force?: boolean): unknown }[] = [];
afterEach(() => {
  for (const s of running.splice(0)) s.stop(true);
});

/** A node: serves `tls` (plain HTTP when undefined) and answers /v1/identity with `identity`. */
function serve(tls: TlsMaterial | undefined, identity: SignedRecord | undefined): TestServer {
  const t: TestServer = { port: 0, identityHits: 0, calls: [] };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    ...(tls ? { tls: { cert: tls.certPem, key: tls.keyPem } } : {}),
    fetch(req) {
      const u = new URL(req.url);
      if (u.pathname === "/v1/identity") {
        t.identityHits++;
        return Response.json({ record: identity });
      }
      t.calls.push([u.protocol, `${req.method} ${u.pathname}${u.search}`]);
      return new Response(`served ${u.pathname}`);
    },
  });
  running.push(server);
  t.port = server.port ?? 0;
  return t;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

describe("send(node, path): the NodeTransport under core's PeerClient", () => {
  test("a node with a cert: TLS pinned to it at the node's address, the path and query kept", async () => {
    const s = serve(certA, recordWithCert(node, certA.certPem));
    const t = new PeerTransport({ requireTls: true });
    const at = { address: { host: "127.0.0.1", port: s.port }, cert: certA.certPem };
    const res = await t.send(at, "/v1/specs?x=1", { method: "GET" });
    expect(await res.text()).toBe("served /v1/specs");
    expect(s.calls).toEqual([["https:", "GET /v1/specs?x=1"]]);
    expect(s.identityHits).toBe(0);
  });

  test("a node known by id only: probed, and an address answering as another node is refused", async () => {
    const s = serve(certA, recordWithCert(stranger, certA.certPem));
    const t = new PeerTransport({ requireTls: true });
    const err = await rejection(
      t.send({ address: { host: "127.0.0.1", port: s.port }, id: node.nodeId }, "/", {}),
    );
    expect(isP2prcError(err, "E_NODE_UNREACHABLE")).toBe(true);
    expect(s.calls).toEqual([]);
  });

  test("through a PeerClient: signed and sent pinned; a wrong pin is a coded E_NODE_UNREACHABLE", async () => {
    const s = serve(certB, recordWithCert(node, certB.certPem));
    const peer = new PeerClient({
      identity: node,
      clock: new ManualClock(),
      transport: new PeerTransport({ requireTls: true }),
    });
    const address = { host: "127.0.0.1", port: s.port };
    expect((await peer.request({ address, cert: certB.certPem }, "/v1/specs")).status).toBe(200);
    const err = await rejection(peer.request({ address, cert: certA.certPem }, "/v1/specs"));
    expect(isP2prcError(err, "E_NODE_UNREACHABLE")).toBe(true);
    expect(s.calls).toEqual([["https:", "GET /v1/specs"]]);
  });
});

describe("a known certificate (expect.cert)", () => {
  test("goes over TLS pinned to it, whatever scheme the URL names, with no probe", async () => {
    const s = serve(certA, recordWithCert(node, certA.certPem));
    const t = new PeerTransport({ requireTls: true });
    const res = await t.fetchFor({ cert: certA.certPem })(`http://127.0.0.1:${s.port}/v1/specs?x=1`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("served /v1/specs");
    expect(s.calls).toEqual([["https:", "GET /v1/specs?x=1"]]);
    expect(s.identityHits).toBe(0);
  });

  test("method, headers and body of init are passed on", async () => {
    let seen: { method: string; header: string | null; body: string } | undefined;
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: certA.certPem, key: certA.keyPem },
      async fetch(req) {
        seen = { method: req.method, header: req.headers.get("x-test"), body: await req.text() };
        return new Response("ok");
      },
    });
    running.push(server);
    const t = new PeerTransport({ requireTls: true });
    const res = await t.fetchFor({ cert: certA.certPem })(`http://127.0.0.1:${server.port}/v1/containers`, {
      method: "POST",
      headers: { "x-test": "yes" },
      body: "payload",
    });
    expect(res.status).toBe(200);
    expect(seen).toEqual({ method: "POST", header: "yes", body: "payload" });
  });

  test("a server with another certificate is refused (the pin is real)", async () => {
    const s = serve(certB, recordWithCert(node, certB.certPem));
    const t = new PeerTransport({ requireTls: true });
    await rejection(t.fetchFor({ cert: certA.certPem })(`https://127.0.0.1:${s.port}/v1/specs`));
    expect(s.calls).toEqual([]);
  });
});

describe("keep-alive sessions", () => {
  test("requests to one peer share a connection; release closes it, and the next request opens a new one", async () => {
    const ports: number[] = [];
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: certA.certPem, key: certA.keyPem },
      fetch(req, srv) {
        ports.push(srv.requestIP(req)?.port ?? 0); // the client's port: one per connection
        return new Response("ok");
      },
    });
    running.push(server);
    const t = new PeerTransport({ requireTls: true });
    const get = async () =>
      (await t.fetchFor({ cert: certA.certPem })(`https://127.0.0.1:${server.port}/x`)).text();
    await get();
    await get();
    expect(t.sessionCount).toBe(1);
    t.release(certA.certPem);
    expect(t.sessionCount).toBe(0);
    await get();
    expect(ports).toHaveLength(3);
    expect(ports[1]).toBe(ports[0] as number); // kept
    expect(ports[2]).not.toBe(ports[0] as number); // a new connection after the release
    t.release(certB.certPem); // no session for it: nothing happens
    expect(t.sessionCount).toBe(1);
    t.close();
  });
});

describe("an address with no known certificate", () => {
  test("is probed; the signed identity names the served certificate; nodeAt then knows the node", async () => {
    const s = serve(certA, recordWithCert(node, certA.certPem));
    const t = new PeerTransport({ requireTls: true });
    expect(t.nodeAt("127.0.0.1", s.port)).toBeUndefined();
    const res = await t.fetchFor()(`http://127.0.0.1:${s.port}/v1/specs`);
    expect(await res.text()).toBe("served /v1/specs");
    expect(s.calls).toEqual([["https:", "GET /v1/specs"]]);
    expect(s.identityHits).toBe(1);
    expect(t.nodeAt("127.0.0.1", s.port)).toBe(node.nodeId);

    // the next request uses what was learnt: no second probe
    await t.fetchFor({ nodeId: node.nodeId })(`http://127.0.0.1:${s.port}/v1/health`);
    expect(s.identityHits).toBe(1);
    expect(s.calls).toHaveLength(2);
  });

  test("identify: the probe proves the node's id with no request of its own; once, then kept (--touch by host:port)", async () => {
    const s = serve(certA, recordWithCert(node, certA.certPem));
    const t = new PeerTransport({ requireTls: true });
    expect(await t.identify({ host: "127.0.0.1", port: s.port })).toBe(node.nodeId);
    expect(await t.identify({ host: "127.0.0.1", port: s.port })).toBe(node.nodeId);
    expect(s.identityHits).toBe(1);
    expect(s.calls).toEqual([]); // no /v1/health: the probe's signed record named the node
    const plain = serve(undefined, recordWithCert(node, certA.certPem));
    const lax = new PeerTransport({ requireTls: false });
    expect(await lax.identify({ host: "127.0.0.1", port: plain.port })).toBeUndefined();
  });

  test("an identity record naming a different certificate is refused as possible interception", async () => {
    // what a man in the middle looks like: its own certificate, the real node's signed record
    const s = serve(certB, recordWithCert(node, certA.certPem));
    const t = new PeerTransport({ requireTls: true });
    const err = await rejection(t.fetchFor()(`http://127.0.0.1:${s.port}/v1/containers`));
    expect(isP2prcError(err, "E_NODE_UNREACHABLE")).toBe(true);
    expect((err as Error).message).toContain("interception");
    expect(s.identityHits).toBe(1);
    expect(s.calls).toEqual([]);
    expect(t.nodeAt("127.0.0.1", s.port)).toBeUndefined();
  });

  test("an identity record with no certificate, or a forged signature, is refused", async () => {
    for (const record of [
      recordWithCert(node, undefined),
      recordWithCert(node, certA.certPem, stranger),
      undefined,
    ]) {
      const s = serve(certA, record);
      const t = new PeerTransport({ requireTls: true });
      const err = await rejection(t.fetchFor()(`http://127.0.0.1:${s.port}/v1/containers`));
      expect(isP2prcError(err, "E_NODE_UNREACHABLE")).toBe(true);
      expect(s.calls).toEqual([]);
    }
  });

  test("a node that answers as another id than expected is refused", async () => {
    const s = serve(certA, recordWithCert(stranger, certA.certPem));
    const t = new PeerTransport({ requireTls: true });
    const err = await rejection(t.fetchFor({ nodeId: node.nodeId })(`http://127.0.0.1:${s.port}/v1/specs`));
    expect(isP2prcError(err, "E_NODE_UNREACHABLE")).toBe(true);
    expect((err as Error).message).toContain(stranger.nodeId.slice(0, 12));
    expect(s.calls).toEqual([]);
    expect(t.nodeAt("127.0.0.1", s.port)).toBeUndefined();
  });

  test("an address already proven for one node is not used for another id", async () => {
    const s = serve(certA, recordWithCert(stranger, certA.certPem));
    const t = new PeerTransport({ requireTls: true });
    await t.fetchFor()(`http://127.0.0.1:${s.port}/v1/specs`);
    expect(t.nodeAt("127.0.0.1", s.port)).toBe(stranger.nodeId);
    const err = await rejection(t.fetchFor({ nodeId: node.nodeId })(`http://127.0.0.1:${s.port}/v1/specs`));
    expect(isP2prcError(err, "E_NODE_UNREACHABLE")).toBe(true);
    expect(s.calls).toHaveLength(1);
  });

  test("a closed port is unreachable", async () => {
    const s = serve(certA, recordWithCert(node, certA.certPem));
    const port = s.port;
    for (const srv of running.splice(0)) srv.stop(true);
    const t = new PeerTransport({ requireTls: true, probeTimeoutMs: 1000 });
    const err = await rejection(t.fetchFor()(`http://127.0.0.1:${port}/v1/specs`));
    expect(isP2prcError(err, "E_NODE_UNREACHABLE")).toBe(true);
  });
});

describe("a plain HTTP node", () => {
  test("is refused when this node requires TLS", async () => {
    const s = serve(undefined, recordWithCert(node, undefined));
    const t = new PeerTransport({ requireTls: true });
    const err = await rejection(t.fetchFor()(`https://127.0.0.1:${s.port}/v1/specs`));
    expect(isP2prcError(err, "E_NODE_UNREACHABLE")).toBe(true);
    expect((err as Error).message).toContain("plain HTTP");
    expect(s.calls).toEqual([]);
    expect(s.identityHits).toBe(0);
  });

  test("is used over http when this node does not require TLS", async () => {
    const s = serve(undefined, recordWithCert(node, undefined));
    const t = new PeerTransport({ requireTls: false });
    const res = await t.fetchFor()(`https://127.0.0.1:${s.port}/v1/specs`);
    expect(await res.text()).toBe("served /v1/specs");
    expect(s.calls).toEqual([["http:", "GET /v1/specs"]]);
    // nothing was proven about who answers
    expect(t.nodeAt("127.0.0.1", s.port)).toBeUndefined();
  });
});

describe("certAt (the IP table's certificate)", () => {
  test("when it has the address's certificate, no probe or identity request is made", async () => {
    const s = serve(certA, recordWithCert(node, certA.certPem));
    const asked: [string, number, string | undefined][] = [];
    const t = new PeerTransport({
      requireTls: true,
      certAt: (host, port, nodeId) => {
        asked.push([host, port, nodeId]);
        return port === s.port ? { nodeId: node.nodeId, cert: certA.certPem } : undefined;
      },
    });
    const res = await t.fetchFor({ nodeId: node.nodeId })(`http://127.0.0.1:${s.port}/v1/specs`);
    expect(await res.text()).toBe("served /v1/specs");
    expect(asked).toEqual([["127.0.0.1", s.port, node.nodeId]]);
    expect(s.identityHits).toBe(0);
    expect(s.calls).toEqual([["https:", "GET /v1/specs"]]);
    expect(t.nodeAt("127.0.0.1", s.port)).toBe(node.nodeId);
  });

  test("an entry for another node id is not used: the address is probed instead", async () => {
    const s = serve(certA, recordWithCert(node, certA.certPem));
    const t = new PeerTransport({
      requireTls: true,
      certAt: () => ({ nodeId: stranger.nodeId, cert: certB.certPem }),
    });
    const res = await t.fetchFor({ nodeId: node.nodeId })(`http://127.0.0.1:${s.port}/v1/specs`);
    expect(res.status).toBe(200);
    expect(s.identityHits).toBe(1);
    expect(t.nodeAt("127.0.0.1", s.port)).toBe(node.nodeId);
  });
});

describe("abort", () => {
  let hang: Server;
  const sockets: Socket[] = [];
  let hangPort = 0;
  beforeAll(async () => {
    // accepts connections and never answers: a TLS handshake against it hangs
    hang = createServer((socket) => {
      sockets.push(socket);
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => hang.listen(0, "127.0.0.1", resolve));
    hangPort = (hang.address() as { port: number }).port;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => hang.close(() => resolve()));
  });

  test("a signal that fires while the probe hangs ends the request promptly", async () => {
    const t = new PeerTransport({ requireTls: true, probeTimeoutMs: 10_000 });
    const ctl = new AbortController();
    const started = performance.now();
    setTimeout(() => ctl.abort(new Error("caller gave up")), 100);
    const err = await rejection(
      t.fetchFor()(`http://127.0.0.1:${hangPort}/v1/specs`, { signal: ctl.signal }),
    );
    const elapsed = performance.now() - started;
    expect((err as Error).message).toBe("caller gave up");
    expect(elapsed).toBeGreaterThanOrEqual(90);
    expect(elapsed).toBeLessThan(1000);
    expect(sockets.length).toBeGreaterThanOrEqual(1); // the probe did connect and hang
  });
});
