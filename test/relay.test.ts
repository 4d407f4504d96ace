// The relay wired into real nodes (in-process): a node with `relay: true` serves a tunnel to a node
// configured with `relays`, and a member reaches that node's signed, TLS-pinned API through it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunningNode } from "../abstractions/index.ts";
import { generateIdentity, pinnedTls } from "../core/index.ts";
import { openRelayForwarder } from "../p2p/index.ts";
import { freePort, nodeIdentity, signedFetch, startTestNode, waitFor } from "./support.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-relay-"));
const bob = generateIdentity();
let carol: RunningNode; // public, relays
let alice: RunningNode; // behind the NAT

beforeAll(async () => {
  const aliceId = nodeIdentity(join(root, "alice")).nodeId;
  const relayPort = await freePort();
  ({ node: carol } = await startTestNode(join(root, "carol"), {
    tls: true,
    relay: true,
    relayPort,
    trusted: [aliceId, bob.nodeId],
  }));
  ({ node: alice } = await startTestNode(join(root, "alice"), {
    tls: true,
    relays: [`127.0.0.1:${relayPort}`],
    trusted: [bob.nodeId],
  }));
});

afterAll(async () => {
  await alice?.stop();
  await carol?.stop();
  rmSync(root, { recursive: true, force: true });
});

test("a member reaches a relayed node's API through the relay, pinned to the node's certificate", async () => {
  expect(carol.relay).toBeDefined();
  await waitFor("the tunnel", async () => alice.relayAgent?.current, 10_000);
  expect(alice.relayAgent?.current?.nodeId).toBe(carol.nodeId);
  const relay = { host: "127.0.0.1", port: carol.relay?.port as number };
  await using fwd = await openRelayForwarder({ relay, target: alice.nodeId, identity: bob });
  const url = `https://127.0.0.1:${fwd.port}/v1/specs`;
  const res = await signedFetch(bob, url, { tls: pinnedTls(alice.certPem as string) });
  expect(res.status).toBe(200);
  // the relay's own certificate is not the node's: pinning refuses it
  const wrong = await signedFetch(bob, url, { tls: pinnedTls(carol.certPem as string) }).then(
    () => "accepted",
    () => "refused",
  );
  expect(wrong).toBe("refused");

  const stats = await signedFetch(bob, `${carol.url}/v1/p2p/stats`, {
    tls: pinnedTls(carol.certPem as string),
  });
  const { relay: counters } = (await stats.json()) as { relay: { tunnels: number; streamsOpened: number } };
  expect(counters.tunnels).toBe(1);
  expect(counters.streamsOpened).toBeGreaterThanOrEqual(2);
});
