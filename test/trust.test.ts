// Signed requests and membership on a real node (in-process, real engine): who may do what.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunningNode } from "../abstractions/index.ts";
import { generateIdentity, type Identity, signRequest } from "../core/index.ts";
import { signedFetch, startTestNode } from "./support.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-trust-"));
const home = join(root, "node");
const member = generateIdentity();
const outsider = generateIdentity();
let node: RunningNode;
let self: Identity;

beforeAll(async () => {
  ({ node, self } = await startTestNode(home, { trusted: [member.nodeId] }));
});

afterAll(async () => {
  const res = await signedFetch(self, `${node.url}/v1/containers`);
  const { containers } = (await res.json()) as { containers: { id: string }[] };
  for (const c of containers)
    await signedFetch(self, `${node.url}/v1/containers/${c.id}`, { method: "DELETE" });
  await node.stop();
  rmSync(root, { recursive: true, force: true });
});

const create = (who: Identity, body = JSON.stringify({ command: ["sleep", "60"] })) =>
  signedFetch(who, `${node.url}/v1/containers`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });

async function allContainers(): Promise<{ id: string; owner: string }[]> {
  const res = await signedFetch(self, `${node.url}/v1/containers`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { containers: { id: string; owner: string }[] }).containers;
}

describe("unauthenticated", () => {
  test("health and the identity probe answer unsigned", async () => {
    expect((await fetch(`${node.url}/v1/health`)).status).toBe(200);
    const id = (await (await fetch(`${node.url}/v1/identity`)).json()) as { nodeId: string };
    expect(id.nodeId).toBe(node.nodeId);
  });

  test("everything else unsigned is 401 and changes nothing", async () => {
    for (const path of ["/v1/specs", "/v1/images", "/v1/containers", "/v1/p2p/table", "/server_info"]) {
      const res = await fetch(`${node.url}${path}`);
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("E_UNAUTHORIZED");
    }
    const res = await fetch(`${node.url}/v1/containers`, {
      method: "POST",
      body: JSON.stringify({ command: ["true"] }),
    });
    expect(res.status).toBe(401);
    expect(await allContainers()).toEqual([]);
  });
});

describe("signed", () => {
  test("an outsider (valid signature, not a member) gets 403 and creates nothing", async () => {
    const res = await create(outsider);
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain("not a member");
    expect(await allContainers()).toEqual([]);
  });

  test("a trusted node creates a container it owns; the outsider cannot see or remove it", async () => {
    const res = await create(member);
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    expect((await allContainers()).find((c) => c.id === id)?.owner).toBe(member.nodeId);
    const mine = (await (await signedFetch(member, `${node.url}/v1/containers`)).json()) as {
      containers: { id: string }[];
    };
    expect(mine.containers.map((c) => c.id)).toContain(id);
    expect(
      (await signedFetch(outsider, `${node.url}/v1/containers/${id}`, { method: "DELETE" })).status,
    ).toBe(403);
    expect((await signedFetch(member, `${node.url}/v1/containers/${id}`, { method: "DELETE" })).status).toBe(
      200,
    );
  });

  test("a captured request cannot be replayed", async () => {
    const url = `${node.url}/v1/containers`;
    const body = JSON.stringify({ command: ["sleep", "60"] });
    const headers = { "content-type": "application/json", ...signRequest(member, "POST", url, body) };
    const first = await fetch(url, { method: "POST", headers, body });
    expect(first.status).toBe(201);
    const again = await fetch(url, { method: "POST", headers, body });
    expect(again.status).toBe(401);
    expect(((await again.json()) as { error: { message: string } }).error.message).toContain("replay");
    expect((await allContainers()).filter((c) => c.owner === member.nodeId)).toHaveLength(1);
  });

  test("a request signed for another node (a member forwarding it here) is 401", async () => {
    const url = `${node.url}/v1/containers`;
    const body = JSON.stringify({ command: ["sleep", "60"] });
    const elsewhere = generateIdentity().nodeId;
    const headers = {
      "content-type": "application/json",
      ...signRequest(member, "POST", url, body, Date.now(), elsewhere),
    };
    const res = await fetch(url, { method: "POST", headers, body });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain("another node");
    const here = signRequest(member, "GET", url, "", Date.now(), node.nodeId);
    expect((await fetch(url, { headers: here })).status).toBe(200);
  });

  test("a stale timestamp, a changed body or a changed path is 401", async () => {
    const url = `${node.url}/v1/containers`;
    const body = JSON.stringify({ command: ["sleep", "60"] });
    const stale = signRequest(member, "POST", url, body, Date.now() - 60_000);
    expect((await fetch(url, { method: "POST", headers: stale, body })).status).toBe(401);
    const signed = signRequest(member, "POST", url, body);
    expect(
      (await fetch(url, { method: "POST", headers: signed, body: body.replace("60", "61") })).status,
    ).toBe(401);
    const forPath = signRequest(member, "GET", `${node.url}/v1/specs`);
    expect((await fetch(`${node.url}/v1/images`, { headers: forPath })).status).toBe(401);
  });

  test("gossip from a non-member is refused and never reaches the table", async () => {
    const record = {
      id: outsider.nodeId,
      name: "outsider",
      addresses: [{ host: "127.0.0.1", port: 1 }],
      nat: false,
      reach: "direct",
      version: Date.now(),
      metadata: "",
      offer: {
        cpus: 1,
        memoryMb: 1,
        gpus: 0,
        freeContainers: 1,
        maxCpusPerContainer: 1,
        maxMemoryMbPerContainer: 1,
      },
      issuedAt: Date.now(),
    };
    const body = JSON.stringify({
      from: { record, signature: outsider.signJson(record) },
      hash: "0".repeat(64),
    });
    const res = await signedFetch(outsider, `${node.url}/v1/p2p/exchange`, { method: "POST", body });
    expect(res.status).toBe(403);
    const table = (await (await signedFetch(self, `${node.url}/v1/p2p/table`)).json()) as {
      nodes: { id: string }[];
    };
    expect(table.nodes.map((n) => n.id)).not.toContain(outsider.nodeId);
  });
});
