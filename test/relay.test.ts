// The relay wired into real nodes (in-process): a node with `relay: true` serves a tunnel to a node
// configured with `relays`, and a member reaches that node's signed, TLS-pinned API through it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { getSpecs, type RunningNode } from "../abstractions/index.ts";
import { generateIdentity, pinnedTls } from "../core/index.ts";
import { type NodeRecord, openRelayForwarder, relayFromRecords } from "../p2p/index.ts";
import { loopbackClient } from "../p2p/relay/fixtures.ts";
import {
  freePort,
  nodeIdentity,
  removeNodeNetworks,
  signedFetch,
  ssh,
  startTestNode,
  waitFor,
} from "./support.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-relay-"));
const bob = nodeIdentity(join(root, "bob")); // a member; in the last test also a node of its own
const dave = generateIdentity(); // another member, who does not own the container
let carol: RunningNode; // public, relays
let alice: RunningNode; // behind the NAT

beforeAll(async () => {
  const aliceId = nodeIdentity(join(root, "alice")).nodeId;
  const relayPort = await freePort();
  ({ node: carol } = await startTestNode(join(root, "carol"), {
    tls: true,
    relay: true,
    relayPort,
    trusted: [aliceId, bob.nodeId, dave.nodeId],
  }));
  ({ node: alice } = await startTestNode(join(root, "alice"), {
    tls: true,
    bootstrap: [carol.url.replace(/^https:\/\//, "")], // alice dials out to gossip; nobody dials her
    behindNat: "true", // no `relays`: she uses the relay carol's record offers
    trusted: [bob.nodeId, dave.nodeId],
  }));
});

afterAll(async () => {
  const docker = new Docker({ socketPath: (process.env.DOCKER_HOST ?? "").replace(/^unix:\/\//, "") });
  for (const c of await docker.listContainers({
    all: true,
    filters: { label: [`p2prc.node=${alice?.nodeId}`] },
  }))
    await docker.getContainer(c.Id).remove({ force: true });
  if (alice) await removeNodeNetworks(docker, [alice.nodeId]);
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

  // alice's signed record says she is relayed, through carol
  await waitFor(
    "the record naming the relay",
    async () => {
      const r = await fetch(`https://127.0.0.1:${fwd.port}/v1/identity`, {
        tls: pinnedTls(alice.certPem as string),
      });
      const { record } = (await r.json()) as { record: { record: { reach: string; relays?: string[] } } };
      return record.record.relays?.[0] === carol.nodeId ? record.record : undefined;
    },
    10_000,
  ).then((record) => expect(record.reach).toBe("relay"));

  const stats = await signedFetch(bob, `${carol.url}/v1/p2p/stats`, {
    tls: pinnedTls(carol.certPem as string),
  });
  const { relay: counters } = (await stats.json()) as { relay: { tunnels: number; streamsOpened: number } };
  expect(counters.tunnels).toBe(1);
  expect(counters.streamsOpened).toBeGreaterThanOrEqual(2);
});

test("ssh into a container on the relayed node, through a loopback forwarder to its published port", async () => {
  await waitFor("the tunnel", async () => alice.relayAgent?.current, 10_000);
  const relay = { host: "127.0.0.1", port: carol.relay?.port as number };
  await using api = await openRelayForwarder({ relay, target: alice.nodeId, identity: bob });
  const key = join(root, "id");
  expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key]).exitCode).toBe(0);
  const res = await signedFetch(bob, `https://127.0.0.1:${api.port}/v1/containers`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      image: "p2prc-test/debian-sshd",
      sshPublicKey: readFileSync(`${key}.pub`, "utf8"),
    }),
    tls: pinnedTls(alice.certPem as string),
  });
  expect(res.status).toBe(201);
  const { ssh: info } = (await res.json()) as { ssh: { port: number } };
  await using tunnel = await openRelayForwarder({
    relay,
    target: alice.nodeId,
    identity: bob,
    port: info.port,
  });
  let last = { stdout: "", stderr: "", exitCode: -1 };
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await Bun.sleep(300)) {
    last = await ssh(key, tunnel.port, "echo ok-through-the-relay");
    if (last.exitCode === 0) break;
  }
  expect(last.stdout.trim()).toBe("ok-through-the-relay");
  // another member's stream to that port is refused by alice
  const outsider = generateIdentity();
  await using other = await openRelayForwarder({
    relay,
    target: alice.nodeId,
    identity: outsider,
    port: info.port,
  });
  expect((await ssh(key, other.port, "true")).exitCode).not.toBe(0);
}, 60_000);

test("the peer client reaches alice by her record alone: relayTransport finds carol's relay port in carol's record", async () => {
  const records = new Map<string, NodeRecord>();
  const identity = async (url: string, cert: string) => {
    const r = await fetch(`${url}/v1/identity`, { tls: pinnedTls(cert) });
    return ((await r.json()) as { record: { record: NodeRecord } }).record.record;
  };
  const carolRecord = await identity(carol.url, carol.certPem as string);
  expect(carolRecord.relayPort).toBe(carol.relay?.port as number);
  records.set(carol.nodeId, { ...carolRecord, addresses: [{ host: "127.0.0.1", port: 1 }] });
  records.set(
    alice.nodeId,
    await waitFor(
      "alice relayed via carol",
      async () => {
        await using fwd = await openRelayForwarder({
          relay: { host: "127.0.0.1", port: carol.relay?.port as number },
          target: alice.nodeId,
          identity: bob,
        });
        const r = await identity(`https://127.0.0.1:${fwd.port}`, alice.certPem as string);
        return r.relays?.[0] === carol.nodeId ? r : undefined;
      },
      10_000,
    ),
  );
  const { client, transport } = loopbackClient(
    bob,
    relayFromRecords((id) => records.get(id)),
  );
  // alice's own address is unreachable here (a NAT): only her id, certificate and record are used
  const aliceRef = {
    id: alice.nodeId,
    cert: alice.certPem,
    tls: true,
    address: { host: "192.0.2.1", port: 9 },
  };
  const specs = await client.json<{ cpus?: number }>(aliceRef, "/v1/specs");
  expect(specs).toBeDefined();
  await transport.close();
});

test("bob's own node: `--specs alice` reaches her through carol, known only from gossip", async () => {
  const { node: bobNode } = await startTestNode(join(root, "bob"), {
    tls: true,
    bootstrap: [carol.url.replace(/^https:\/\//, "")],
    trusted: [carol.nodeId, alice.nodeId],
    gossipIntervalMs: 200,
  });
  try {
    // bob learns alice's record (relayed via carol) and carol's (with her relay port) from carol
    await waitFor(
      "alice's and carol's records at bob",
      async () => {
        const res = await signedFetch(bob, `${bobNode.url}/v1/p2p/table`, {
          tls: pinnedTls(bobNode.certPem as string),
        });
        const { nodes } = (await res.json()) as { nodes: { id: string }[] };
        const ids = nodes.map((n) => n.id);
        return ids.includes(alice.nodeId) && ids.includes(carol.nodeId) ? true : undefined;
      },
      15_000,
    );
    const before = carol.relay?.stats.streamsOpened ?? 0;
    const specs = await getSpecs({ configDir: join(root, "bob"), env: {} }, alice.nodeId);
    expect(specs).toBeDefined();
    // through carol's relay (alice's loopback address would have answered too: the record decides)
    expect(carol.relay?.stats.streamsOpened).toBeGreaterThan(before);
  } finally {
    await bobNode.stop();
  }
}, 60_000);
