import { expect, test } from "bun:test";
import { generateIdentity } from "../../core/index.ts";
import { recordOf } from "../fixtures.ts";
import type { NodeRecord } from "../types.ts";
import { relayFromRecords } from "./route.ts";

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
