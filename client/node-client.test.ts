// NodeClient over the real server app in-process (hono's typed hc → core's PeerClient → a transport
// that hands the request to `app.request`), with the real auth middleware on a ManualClock: no engine,
// no network.
import { describe, expect, test } from "bun:test";
import {
  generateIdentity,
  ManualClock,
  memoryLogger,
  type NodeRef,
  type NodeTransport,
  P2prcError,
  PeerClient,
} from "../core/index.ts";
import { engineFreeApp } from "../server/fixtures.ts";
import { openStore } from "../store/index.ts";
import { NodeClient } from "./node-client.ts";

const server = generateIdentity();
const member = generateIdentity();
const outsider = generateIdentity();
const START = 1_767_225_600_000;

function makeNode() {
  const serverClock = new ManualClock(START);
  const store = openStore(":memory:");
  const app = engineFreeApp({
    records: store.containers,
    nodeId: server.nodeId,
    name: "nc-test",
    clock: serverClock,
    auth: {
      selfId: server.nodeId,
      isMember: (id) => id === member.nodeId,
      isAdmin: () => false,
      skewMs: 30_000,
      clock: serverClock,
      logger: memoryLogger(),
      maxBodyBytes: 1 << 20,
      startedAt: START - 1000,
    },
  });
  const sent: NodeRef[] = [];
  const transport: NodeTransport = {
    send: (node, path, init) => {
      sent.push(node);
      return Promise.resolve(app.request(path, init));
    },
  };
  const node: NodeRef = { address: { host: "10.0.0.7", port: 8088 }, id: server.nodeId };
  const client = (as = member, clock = new ManualClock(START)) =>
    new NodeClient(new PeerClient({ identity: as, clock, transport }), node);
  return { client, sent, node, [Symbol.dispose]: () => store.close() };
}

async function failure(p: Promise<unknown>): Promise<P2prcError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (err instanceof P2prcError) return err;
  throw new Error(`expected a P2prcError, got ${String(err)}`);
}

describe("NodeClient", () => {
  test("typed replies from the server, sent to the node it was given", async () => {
    using n = makeNode();
    const health = await n.client().health();
    expect(health).toEqual({ ok: true, nodeId: server.nodeId, name: "nc-test", version: "test" });
    expect(n.sent).toEqual([n.node]);
  });

  test("signed at the client's clock: the server (on its own clock) accepts it, and refuses a skewed one", async () => {
    using n = makeNode();
    const missing = await failure(n.client().getContainer("nope"));
    expect(missing.code).toBe("E_NOT_FOUND");
    const skewed = await failure(n.client(member, new ManualClock(START + 10 * 60_000)).getContainer("nope"));
    expect(skewed.code).toBe("E_UNAUTHORIZED");
    expect(skewed.message).toContain("timestamp");
  });

  test("an outsider gets E_FORBIDDEN with the hint to be added", async () => {
    using n = makeNode();
    const refused = await failure(n.client(outsider).removeContainer("abc"));
    expect(refused.code).toBe("E_FORBIDDEN");
    expect(refused.hint).toContain("--whoami");
  });

  test("a body the server refuses comes back with its field", async () => {
    using n = makeNode();
    const bad = await failure(n.client().createContainer({ image: "" } as never));
    expect(bad.code).toBe("E_INVALID");
    expect(bad.field).toStartWith("body");
  });
});
