import { afterEach, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { generateIdentity, isP2prcError, ManualClock, memoryLogger, systemClock } from "../../core/index.ts";
import { RelayAgent, type RelayAgentOptions } from "./agent.ts";
import { relayConnect } from "./connect.ts";
import { dialThroughRelay } from "./dial.ts";
import { echoServer, relayFor, roundTrip, until } from "./fixtures.ts";
import { signHello } from "./handshake.ts";
import { startRelay } from "./relay.ts";

const relayId = generateIdentity();
const alice = generateIdentity(); // the node behind the NAT
const bob = generateIdentity(); // a member calling it
const mallory = generateIdentity(); // not a member

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function agentFor(
  who: typeof alice,
  relays: { host: string; port: number }[],
  localPort: number,
  extra: Partial<RelayAgentOptions> = {},
) {
  const agent = new RelayAgent({
    identity: who,
    relays,
    local: { host: "127.0.0.1", port: localPort },
    clock: systemClock,
    logger: memoryLogger(),
    backoffMinMs: 20,
    backoffMaxMs: 200,
    ...extra,
  });
  agent.start();
  cleanup.push(() => agent.stop());
  return agent;
}

/** A local echo server (the node's own server) and a relay serving `members`, both stopped after the test. */
async function setup(members: (typeof alice)[], limits?: Parameters<typeof relayFor>[2]) {
  const echo = echoServer();
  cleanup.push(() => echo.stop(true));
  const relay = await relayFor(relayId, members, limits);
  cleanup.push(() => relay.stop());
  return { echo, relay };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return isP2prcError(err) ? err.code : String(err);
  }
  return "accepted";
}

describe("relay", () => {
  test("a member's tunnel and stream carry bytes both ways, and are counted", async () => {
    const { echo, relay } = await setup([alice, bob]);
    const agent = agentFor(alice, [relay], echo.port);
    await until(() => agent.current !== undefined, 5000, "tunnel");
    expect(agent.current?.nodeId).toBe(relayId.nodeId);
    expect(relay.tunnels()).toEqual([alice.nodeId]);

    const payload = randomBytes(1 << 20);
    const conn = await dialThroughRelay({ relay, target: alice.nodeId, identity: bob });
    const back = await roundTrip(conn, payload);
    expect(back.equals(payload)).toBe(true);
    expect(relay.stats.streamsOpened).toBe(1);
    expect(relay.stats.bytes).toBe(2 * payload.length);
    conn.socket.end();
    await until(() => relay.stats.streams === 0, 5000, "stream closed");
    expect(relay.stats.tunnels).toBe(1);
  });

  test("a non-member can neither open a tunnel nor a stream, and nothing is forwarded", async () => {
    const { echo, relay } = await setup([alice, bob]);
    const evil = agentFor(mallory, [relay], echo.port);
    await until(() => evil.stats.failures >= 1, 5000, "refused tunnel");
    expect(evil.current).toBeUndefined();
    expect(relay.tunnels()).toEqual([]);

    const agent = agentFor(alice, [relay], echo.port);
    await until(() => agent.current !== undefined, 5000, "tunnel");
    expect(await refusal(dialThroughRelay({ relay, target: alice.nodeId, identity: mallory }))).toBe(
      "E_FORBIDDEN",
    );
    expect(relay.stats.refused.notMember).toBeGreaterThanOrEqual(2);
    expect(echo.accepted()).toBe(0);
    expect(relay.stats.bytes).toBe(0);
  });

  test("a relay at its limits refuses tunnels and streams cleanly", async () => {
    const { echo, relay } = await setup([alice, bob, mallory], { maxTunnels: 1, maxStreamsPerMember: 1 });
    const agent = agentFor(alice, [relay], echo.port);
    await until(() => agent.current !== undefined, 5000, "tunnel");
    const second = agentFor(mallory, [relay], echo.port);
    await until(() => relay.stats.refused.tunnelLimit >= 1, 5000, "tunnel limit");
    expect(second.current).toBeUndefined();

    const first = await dialThroughRelay({ relay, target: alice.nodeId, identity: bob });
    expect(await refusal(dialThroughRelay({ relay, target: alice.nodeId, identity: bob }))).toBe("E_LIMIT");
    expect(relay.stats.refused.streamLimit).toBe(1);
    // the first stream still works, and a stream to a node without a tunnel is refused as such
    expect((await roundTrip(first, Buffer.from("ping"))).toString()).toBe("ping");
    expect(await refusal(dialThroughRelay({ relay, target: mallory.nodeId, identity: mallory }))).toBe(
      "E_NODE_UNREACHABLE",
    );
    expect(relay.stats.refused.noTunnel).toBe(1);
  });

  test("a forged or replayed hello is refused", async () => {
    const relay = await relayFor(relayId, [alice, bob]);
    cleanup.push(() => relay.stop());
    // signed by mallory but claiming to be bob
    const forged = relayConnect(relay, (h) => ({
      ...signHello(mallory, h, { kind: "stream", node: bob.nodeId, target: alice.nodeId }),
      node: bob.nodeId,
    }));
    expect(await refusal(forged)).toBe("E_UNAUTHORIZED");
    // bob's real signature, over another connection's challenge
    const replayed = relayConnect(relay, (h) =>
      signHello(
        bob,
        { ...h, challenge: "0".repeat(32) },
        { kind: "stream", node: bob.nodeId, target: alice.nodeId },
      ),
    );
    expect(await refusal(replayed)).toBe("E_UNAUTHORIZED");
    // a work connection with a token the relay never issued
    const token = relayConnect(relay, (h) =>
      signHello(alice, h, { kind: "work", node: alice.nodeId, token: "ab".repeat(16) }),
    );
    expect(await refusal(token)).toBe("E_FORBIDDEN");
    expect(relay.stats.refused.badHello).toBe(2);
    expect(relay.stats.refused.badToken).toBe(1);
  });

  test("relay killed: the agent fails over to the second relay", async () => {
    const echo = echoServer();
    cleanup.push(() => echo.stop(true));
    const one = await relayFor(relayId, [alice, bob]);
    const twoId = generateIdentity();
    const two = await relayFor(twoId, [alice, bob]);
    cleanup.push(() => two.stop());
    cleanup.push(() => one.stop());
    const agent = agentFor(alice, [one, two], echo.port);
    const changes: (string | undefined)[] = [];
    agent.subscribe((r) => changes.push(r?.nodeId));
    await until(() => agent.current?.nodeId === relayId.nodeId, 5000, "tunnel to the first relay");
    const killedAt = Date.now();
    await one.stop();
    await until(() => agent.current?.nodeId === twoId.nodeId, 5000, "tunnel to the second relay");
    expect(Date.now() - killedAt).toBeLessThan(2000);
    expect(changes).toEqual([relayId.nodeId, undefined, twoId.nodeId]);
    const conn = await dialThroughRelay({ relay: two, target: alice.nodeId, identity: bob });
    expect((await roundTrip(conn, Buffer.from("again"))).toString()).toBe("again");
  });

  test("an idle stream is closed while its tunnel, pinged, stays up", async () => {
    const { echo, relay } = await setup([alice, bob], { idleTimeoutMs: 300 });
    const agent = agentFor(alice, [relay], echo.port);
    await until(() => agent.current !== undefined, 5000, "tunnel");
    const conn = await dialThroughRelay({ relay, target: alice.nodeId, identity: bob });
    expect((await roundTrip(conn, Buffer.from("hi"))).toString()).toBe("hi");
    await until(() => relay.stats.idleClosed === 1, 3000, "idle stream closed");
    expect(relay.stats.streams).toBe(0);
    await Bun.sleep(1200); // four ping intervals: a silent tunnel would be dropped after three
    expect(relay.tunnels()).toEqual([alice.nodeId]);
    expect(agent.stats.connects).toBe(1);
  });

  test("a stream waiting for a node whose tunnel closes is refused at once", async () => {
    const relay = await relayFor(relayId, [alice, bob]);
    cleanup.push(() => relay.stop());
    // a node that keeps a tunnel but never answers stream requests
    const control = await relayConnect(relay, (h) =>
      signHello(alice, h, { kind: "control", node: alice.nodeId, nonce: "cd".repeat(16) }),
    );
    control.attach({ data: () => {}, close: () => {} });
    const stream = dialThroughRelay({ relay, target: alice.nodeId, identity: bob });
    await until(() => relay.stats.streams === 1, 3000, "stream pending");
    const t0 = Date.now();
    control.socket.end();
    expect(await refusal(stream)).toBe("E_NODE_UNREACHABLE");
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(relay.stats.streams).toBe(0);
  });

  test("a stream to another port of the node's machine goes only where the node allows that caller", async () => {
    const { echo, relay } = await setup([alice, bob, mallory]);
    const sshd = echoServer(); // a container's published port, bob's
    cleanup.push(() => sshd.stop(true));
    const agent = agentFor(alice, [relay], echo.port, {
      allowPort: (caller, port) => caller === bob.nodeId && port === sshd.port,
    });
    await until(() => agent.current !== undefined, 5000, "tunnel");
    const mine = await dialThroughRelay({ relay, target: alice.nodeId, identity: bob, port: sshd.port });
    expect((await roundTrip(mine, Buffer.from("SSH-2.0"))).toString()).toBe("SSH-2.0");
    expect(sshd.accepted()).toBe(1);
    const theirs = dialThroughRelay({ relay, target: alice.nodeId, identity: mallory, port: sshd.port });
    expect(await refusal(theirs)).toBe("E_FORBIDDEN");
    expect(await refusal(dialThroughRelay({ relay, target: alice.nodeId, identity: bob, port: 1 }))).toBe(
      "E_FORBIDDEN",
    );
    expect(relay.stats.refused.byNode).toBe(2);
    expect(sshd.accepted()).toBe(1);
    expect(echo.accepted()).toBe(0);
  });

  test("a mapped port (p2prc --mp) goes where the mapping says, for the callers it names", async () => {
    const { echo, relay } = await setup([alice, bob, mallory]);
    const service = echoServer(); // a service on alice's machine, mapped as port 8080
    cleanup.push(() => service.stop(true));
    const agent = agentFor(alice, [relay], echo.port, {
      mapped: (caller, port) =>
        caller === bob.nodeId && port === 8080 ? { host: "127.0.0.1", port: service.port } : undefined,
    });
    await until(() => agent.current !== undefined, 5000, "tunnel");
    const mine = await dialThroughRelay({ relay, target: alice.nodeId, identity: bob, port: 8080 });
    let closed = false;
    const echoed = new Promise<string>((resolve) =>
      mine.attach({ data: (chunk) => resolve(Buffer.from(chunk).toString()), close: () => (closed = true) }),
    );
    mine.socket.write("GET /");
    expect(await echoed).toBe("GET /");
    expect(service.accepted()).toBe(1);
    // the mapping removed: its open stream is closed
    expect(agent.closeMapped(8080)).toBe(1);
    await until(() => closed, 3000, "the mapped stream closed");
    const theirs = dialThroughRelay({ relay, target: alice.nodeId, identity: mallory, port: 8080 });
    expect(await refusal(theirs)).toBe("E_FORBIDDEN");
    expect(service.accepted()).toBe(1);
    expect(echo.accepted()).toBe(0);
  });

  test("a public mapping: the relay opens a port in its range for it, within its limit, and closes it", async () => {
    const { echo, relay } = await setup([alice, bob], {
      maxPublicPorts: 1,
      publicPortMin: 0,
      publicPortMax: 0,
    });
    const service = echoServer();
    cleanup.push(() => service.stop(true));
    let isPublic = true;
    const agent = agentFor(alice, [relay], echo.port, {
      mapped: (caller, port) =>
        port === 8080 && (isPublic || caller !== undefined)
          ? { host: "127.0.0.1", port: service.port }
          : undefined,
    });
    await until(() => agent.current !== undefined, 5000, "tunnel");
    agent.publish([{ port: 8080 }]);
    await until(() => agent.published().length === 1, 3000, "the relay's answer");
    const publicPort = agent.published()[0]?.public as number;
    expect(publicPort).toBeGreaterThan(0);
    expect(relay.stats.publicPorts).toBe(1);
    // anyone: a plain TCP connection, no hello
    const echoed = await new Promise<string>((resolve) => {
      void Bun.connect({
        hostname: "127.0.0.1",
        port: publicPort,
        socket: { open: (s) => void s.write("hi"), data: (_s, d) => resolve(Buffer.from(d).toString()) },
      });
    });
    expect(echoed).toBe("hi");
    // a second one is over the relay's limit: refused, counted
    agent.publish([{ port: 8080 }, { port: 9090 }]);
    await until(() => agent.published().length === 2, 3000, "the second answer");
    expect(agent.published().find((p) => p.port === 9090)?.error).toBe(
      "relay at its limit of 1 public ports",
    );
    expect(relay.stats.refused.publicLimit).toBe(1);
    // no longer public at the node: the node refuses, nothing reaches the service
    isPublic = false;
    const closed = await new Promise<string>((resolve) => {
      void Bun.connect({
        hostname: "127.0.0.1",
        port: publicPort,
        socket: {
          open: (s) => void s.write("x"),
          data: () => resolve("answered"),
          close: () => resolve("closed"),
        },
      });
    });
    expect(closed).toBe("closed");
    expect(service.accepted()).toBe(1);
    // unpublished: the port closes
    agent.publish([]);
    await until(() => relay.stats.publicPorts === 0, 3000, "the public port closed");
    const refused = await Bun.connect({
      hostname: "127.0.0.1",
      port: publicPort,
      socket: { data: () => {} },
    }).then(
      () => "connected",
      () => "refused",
    );
    expect(refused).toBe("refused");
  });

  test("--dn: the relay's HTTP port routes each connection by its Host to the mapping with that domain", async () => {
    const echo = echoServer();
    cleanup.push(() => echo.stop(true));
    const relay = await startRelay({
      identity: relayId,
      isMember: (id) => id === alice.nodeId || id === bob.nodeId,
      host: "127.0.0.1",
      port: 0,
      httpPort: 0,
      limits: { maxPublicPorts: 2 },
      clock: systemClock,
      logger: memoryLogger(),
    });
    cleanup.push(() => relay.stop());
    const app = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (r) => new Response(`app ${r.headers.get("host")}`),
    });
    cleanup.push(() => app.stop(true));
    const agent = agentFor(alice, [relay], echo.port, {
      mapped: (_caller, port) =>
        port === 8080 ? { host: "127.0.0.1", port: app.port as number } : undefined,
    });
    await until(() => agent.current !== undefined, 5000, "tunnel");
    agent.publish([{ port: 8080, domain: "Alice.Example" }]);
    await until(() => agent.published().length === 1, 3000, "the relay's answer");
    const answer = agent.published()[0];
    expect(answer?.domain).toBe("alice.example");
    const http = answer?.public as number;
    const get = (host: string) =>
      new Promise<string>((resolve) => {
        let got = "";
        void Bun.connect({
          hostname: "127.0.0.1",
          port: http,
          socket: {
            open: (s) => void s.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
            data: (_s, d) => {
              got += Buffer.from(d).toString();
            },
            close: () => resolve(got),
          },
        });
      });
    expect(await get("alice.example:80")).toEndWith("app alice.example:80");
    expect(await get("bob.example")).toStartWith("HTTP/1.1 404");
    // another node cannot take a domain that is alice's
    const other = agentFor(bob, [relay], echo.port);
    await until(() => other.current !== undefined, 5000, "bob's tunnel");
    other.publish([{ port: 1, domain: "alice.example" }]);
    await until(() => other.published().length === 1, 3000, "the refusal");
    expect(other.published()[0]?.error).toBe("domain alice.example is another mapping's here");
    agent.publish([]);
    await until(() => relay.stats.publicPorts === 0, 3000, "the domain released");
    expect(await get("alice.example")).toStartWith("HTTP/1.1 404");
  });

  test("a connection that sends no hello is closed after the handshake timeout (on the relay's clock)", async () => {
    const clock = new ManualClock();
    const relay = await startRelay({
      identity: relayId,
      isMember: () => true,
      host: "127.0.0.1",
      port: 0,
      limits: { handshakeTimeoutMs: 10_000 },
      clock,
      logger: memoryLogger(),
    });
    cleanup.push(() => relay.stop());
    let closed = false;
    let hello = "";
    await Bun.connect({
      hostname: "127.0.0.1",
      port: relay.port,
      socket: {
        data: (_s, chunk) => {
          hello += Buffer.from(chunk).toString();
        },
        close: () => {
          closed = true;
        },
      },
    });
    await until(() => hello.endsWith("\n"), 3000, "the relay's hello");
    clock.advance(9_000);
    await Bun.sleep(50);
    expect(closed).toBe(false);
    clock.advance(2_000);
    await until(() => closed, 3000, "closed");
    expect(relay.stats.refused.timeout).toBe(1);
  });
});
