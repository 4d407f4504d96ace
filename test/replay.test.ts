// Replay across a restart: the nonce cache is in memory, so what keeps a captured request out after a
// restart is that the node refuses every request signed before it started (Docs/Security.md).
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import { signRequest } from "../core/index.ts";
import { freePort, nodeIdentity, signedFetch, spawnNode } from "./support.ts";

const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const root = mkdtempSync(join(tmpdir(), "p2prc-replay-"));
const home = join(root, "node");
const procs: Subprocess[] = [];
let nodeId = "";

const engineIds = async () =>
  (await docker.listContainers({ all: true, filters: { label: [`p2prc.node=${nodeId}`] } })).map((c) => c.Id);

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill(9);
  if (nodeId) for (const id of await engineIds()) await docker.getContainer(id).remove({ force: true });
  rmSync(root, { recursive: true, force: true });
});

test("a signed create captured before a restart and replayed right after it is 401; one container exists", async () => {
  const key = nodeIdentity(home);
  nodeId = key.nodeId;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/v1/containers`;
  const body = JSON.stringify({ command: ["sleep", "120"] });
  const { proc: first } = await spawnNode({ home, port, procs });
  const captured = { "content-type": "application/json", ...signRequest(key, "POST", url, body) };
  const made = await fetch(url, { method: "POST", headers: captured, body });
  expect(made.status).toBe(201);
  expect((await engineIds()).length).toBe(1);
  // the same request again, same process: the nonce cache refuses it
  expect((await fetch(url, { method: "POST", headers: captured, body })).status).toBe(401);

  first.kill("SIGTERM");
  await first.exited;
  await spawnNode({ home, port, procs });
  const replay = await fetch(url, { method: "POST", headers: captured, body });
  const json = (await replay.json()) as { error: { code: string; message: string } };
  expect(replay.status).toBe(401);
  expect(json.error.code).toBe("E_UNAUTHORIZED");
  expect(json.error.message).toContain("signed before this node (re)started");
  expect((await engineIds()).length).toBe(1);
  // a freshly signed request is served as usual
  const list = await signedFetch(key, url);
  expect(list.status).toBe(200);
  expect(((await list.json()) as { containers: unknown[] }).containers.length).toBe(1);
}, 60_000);
