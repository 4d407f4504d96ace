import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  generateIdentity,
  loadOrCreateTlsCertificate,
  memoryLogger,
  pinnedTls,
  systemClock,
} from "../../core/index.ts";
import { RelayAgent } from "./agent.ts";
import { openRelayForwarder } from "./dial.ts";
import { loopbackClient, relayFor, until } from "./fixtures.ts";

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

test("HTTPS pinned to the node's own certificate works through a forwarder; another certificate is refused", async () => {
  const dir = mkdtempSync(join(tmpdir(), "p2prc-relay-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const tls = await loadOrCreateTlsCertificate(dir, "alice");
  const alice = generateIdentity();
  const bob = generateIdentity();
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: tls.certPem, key: tls.keyPem },
    fetch: async (req) => new Response(`hello ${new URL(req.url).pathname} ${(await req.text()).length}`),
  });
  cleanup.push(() => server.stop(true));
  const relay = await relayFor(generateIdentity(), [alice, bob]);
  cleanup.push(() => relay.stop());
  const agent = new RelayAgent({
    identity: alice,
    relays: [relay],
    local: { host: "127.0.0.1", port: server.port as number },
    clock: systemClock,
    logger: memoryLogger(),
  });
  agent.start();
  cleanup.push(() => agent.stop());
  await until(() => agent.current !== undefined, 5000, "tunnel");

  const fwd = await openRelayForwarder({ relay, target: alice.nodeId, identity: bob });
  cleanup.push(() => fwd.stop());
  const body = "x".repeat(300_000);
  const replies = await Promise.all(
    [1, 2, 3].map((i) =>
      fetch(`https://127.0.0.1:${fwd.port}/n${i}`, {
        method: "POST",
        body,
        tls: pinnedTls(tls.certPem),
      }).then((r) => r.text()),
    ),
  );
  expect(replies).toEqual(["hello /n1 300000", "hello /n2 300000", "hello /n3 300000"]);
  expect(relay.stats.streamsOpened).toBeGreaterThanOrEqual(1);
  expect(relay.stats.bytes).toBeGreaterThan(3 * 300_000);

  // the peer client, through relayTransport: the relayed node by its id, pinned to its certificate;
  // a direct node goes to the base transport at its own address
  const { client, transport, seen } = loopbackClient(bob, (node) =>
    node.id === alice.nodeId ? relay : undefined,
  );
  cleanup.push(() => transport.close());
  const relayed = {
    id: alice.nodeId,
    cert: tls.certPem,
    tls: true,
    address: { host: "192.0.2.1", port: 8088 },
  };
  expect(await (await client.request(relayed, "/p/1")).text()).toBe("hello /p/1 0");
  expect(await (await client.request(relayed, "/p/2")).text()).toBe("hello /p/2 0");
  const direct = {
    id: bob.nodeId,
    cert: tls.certPem,
    tls: true,
    address: { host: "127.0.0.1", port: server.port as number },
  };
  expect(await (await client.request(direct, "/d")).text()).toBe("hello /d 0");
  expect(seen[0]).not.toBe("192.0.2.1:8088"); // the forwarder's address, not the unreachable one
  expect(seen[0]).toBe(seen[1] as string); // one forwarder per node, kept
  expect(seen[2]).toBe(`127.0.0.1:${server.port}`);
  // a streamed body (an image push) goes through the relay as it is read
  const chunk = new Uint8Array(1 << 20).fill(7);
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent++ < 3) c.enqueue(chunk);
      else c.close();
    },
  });
  const pushed = await client.request(relayed, "/s", { method: "POST", body: stream });
  expect(await pushed.text()).toBe(`hello /s ${3 << 20}`);

  // another certificate (an interceptor) is refused by the caller's pinning
  const other = await loadOrCreateTlsCertificate(join(dir, "other"), "mallory");
  const wrong = await fetch(`https://127.0.0.1:${fwd.port}/x`, { tls: pinnedTls(other.certPem) }).then(
    () => "accepted",
    () => "refused",
  );
  expect(wrong).toBe("refused");
});

test("a forwarder to a node without a tunnel closes the connection", async () => {
  const relay = await relayFor(generateIdentity(), [generateIdentity()]);
  cleanup.push(() => relay.stop());
  const bob = generateIdentity();
  const fwd = await openRelayForwarder({ relay, target: bob.nodeId, identity: bob });
  cleanup.push(() => fwd.stop());
  const r = await fetch(`http://127.0.0.1:${fwd.port}/`).then(
    () => "answered",
    () => "closed",
  );
  expect(r).toBe("closed");
  expect(relay.stats.refused.notMember).toBe(1);
});
