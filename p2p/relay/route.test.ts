import { expect, test } from "bun:test";
import { generateIdentity } from "../../core/index.ts";
import { recordOf } from "../fixtures.ts";
import type { NodeRecord, PeerView } from "../types.ts";
import { offeredRelays, relayedByRecords, relayFromRecords } from "./route.ts";
import { relayTransport } from "./transport.ts";

const [alice, carol, dave, bob] = [
  generateIdentity(),
  generateIdentity(),
  generateIdentity(),
  generateIdentity(),
];

test("a relayed node is reached through the first relay it names whose record gives a relay port", () => {
  const held = new Map<string, NodeRecord>([
    [alice.nodeId, recordOf(alice, { reach: "relay", relays: [dave.nodeId, carol.nodeId] })],
    [dave.nodeId, recordOf(dave)], // names no relay port: not a relay (any more)
    [carol.nodeId, recordOf(carol, { addresses: [{ host: "203.0.113.5", port: 8088 }], relayPort: 8089 })],
    [bob.nodeId, recordOf(bob, { relayPort: 8089 })],
  ]);
  const relayOf = relayFromRecords((id) => held.get(id));
  const ref = (id: string) => ({ id, address: { host: "10.0.0.1", port: 8088 } });
  expect(relayOf(ref(alice.nodeId))).toEqual({ host: "203.0.113.5", port: 8089, nodeId: carol.nodeId });
  expect(relayOf(ref(bob.nodeId))).toBeUndefined(); // direct, even if it serves a relay itself
  expect(relayOf(ref(generateIdentity().nodeId))).toBeUndefined(); // unknown
  held.set(alice.nodeId, recordOf(alice, { reach: "relay", relays: [dave.nodeId] }));
  expect(relayOf(ref(alice.nodeId))).toBeUndefined(); // no relay known with a port
});

test("the relays offered in the table: live, direct, with a relay port, nearest first, never this node", () => {
  const erin = generateIdentity();
  const held = new Map<string, NodeRecord>([
    [carol.nodeId, recordOf(carol, { relayPort: 8089 })],
    [dave.nodeId, recordOf(dave, { relayPort: 9089 })],
    [bob.nodeId, recordOf(bob)], // offers no relay
    [erin.nodeId, recordOf(erin, { relayPort: 8089, reach: "relay" })], // relayed itself
    [alice.nodeId, recordOf(alice, { relayPort: 8089 })], // this node
  ]);
  const view = (id: string, latencyMs: number, over: Partial<PeerView> = {}) =>
    ({
      id,
      address: `10.0.0.${latencyMs}`,
      latencyMs,
      state: "alive",
      reach: held.get(id)?.reach,
      ...over,
    }) as PeerView;
  const views = [
    view(carol.nodeId, 9),
    view(dave.nodeId, 3),
    view(bob.nodeId, 1),
    view(erin.nodeId, 1),
    view(alice.nodeId, 0),
  ];
  expect(offeredRelays(views, (id) => held.get(id), alice.nodeId)).toEqual([
    { host: "10.0.0.3", port: 9089, nodeId: dave.nodeId },
    { host: "10.0.0.9", port: 8089, nodeId: carol.nodeId },
  ]);
  views[1] = view(dave.nodeId, 3, { state: "suspect" });
  expect(offeredRelays(views, (id) => held.get(id), alice.nodeId).map((r) => r.nodeId)).toEqual([
    carol.nodeId,
  ]);
});

test("a relayed node between two relays fails at once, retryable, and is never dialed behind its NAT", async () => {
  const between = recordOf(alice, { reach: "relay", relays: [] } as Partial<NodeRecord>);
  const records = (id: string) => (id === alice.nodeId ? between : undefined);
  const dialed: string[] = [];
  const transport = relayTransport({
    base: {
      send: async (node) => {
        dialed.push(`${node.address.host}:${node.address.port}`);
        return new Response("direct");
      },
    },
    identity: bob,
    relayOf: relayFromRecords(records),
    relayed: relayedByRecords(records),
  });
  const node = { id: alice.nodeId, address: { host: "10.250.1.2", port: 8088 } };
  const err = await transport.send(node, "/v1/specs", { method: "GET" }).catch((e: unknown) => e);
  expect(err).toMatchObject({ code: "E_NODE_UNREACHABLE", retryable: true });
  expect(dialed).toEqual([]);
  // a direct node still goes to the base transport
  const direct = { id: carol.nodeId, address: { host: "10.250.0.2", port: 8088 } };
  expect(await (await transport.send(direct, "/v1/specs", { method: "GET" })).text()).toBe("direct");
  await transport.close();
});
