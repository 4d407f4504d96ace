// Batch tasks on the real engine: the prepared directories, hard-linked read-only inputs, and a task that
// removes them all does not break the next one.
import { afterAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { systemClock } from "../../core/index.ts";
import { openStore } from "../../store/index.ts";
import { removeTestNodes } from "../../test/support.ts";
import { callApp, testServerApp } from "../fixtures.ts";
import { createDockerEngine } from "../index.ts";

const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const NODE_ID = randomBytes(32).toString("hex");
const root = mkdtempSync(join(tmpdir(), "p2prc-batch-docker-"));

afterAll(async () => {
  await removeTestNodes(docker, [], [NODE_ID]);
  rmSync(root, { recursive: true, force: true });
});

function makeApp() {
  const { app } = testServerApp({
    engine: createDockerEngine({ host: DOCKER_HOST }),
    records: openStore(":memory:").containers,
    clock: systemClock,
    nodeId: NODE_ID,
    dataDir: root,
  });
  return (method: string, path: string, body?: unknown) =>
    callApp(app, method, path, typeof body === "string" ? { raw: body } : { json: body });
}

describe("batch tasks on Docker", () => {
  test("inputs are linked read-only into fresh directories; a task that deletes them breaks no later task", async () => {
    const call = makeApp();
    const content = "the shared input\n";
    const digest = createHash("sha256").update(content).digest("hex");
    expect((await call("PUT", `/v1/inputs/${digest}`, content)).status).toBe(201);
    const made = await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] });
    expect(made.status).toBe(201);
    const task = (command: string) =>
      call("POST", `/v1/containers/${made.json.id}/tasks`, {
        command: ["sh", "-c", command],
        inputs: [{ name: "in.txt", digest }],
      });

    const first = await task(
      'cat in.txt; ls | wc -l; echo x >> in.txt || echo "read-only"; echo new > mine.txt',
    );
    expect(first.json).toMatchObject({ exitCode: 0, stdout: `${content}1\nread-only\n` });
    const second = await task("cat in.txt; ls");
    expect(second.json).toMatchObject({ exitCode: 0, stdout: `${content}in.txt\n` });
    expect(second.json.workingDir).not.toBe(first.json.workingDir);
    // a task (running as root) removes every directory and the container's input copy
    const wipe = await task("rm -rf /p2prc-task/* /p2prc-inputs; echo gone");
    expect(wipe.json).toMatchObject({ exitCode: 0, stdout: "gone\n" });
    const after = await task("cat in.txt; pwd");
    expect(after.json).toMatchObject({ exitCode: 0, stdout: `${content}${after.json.workingDir}\n` });
    const out = await call(
      "GET",
      `/v1/containers/${made.json.id}/files?path=${first.json.workingDir}/mine.txt`,
    );
    expect(out.status).toBe(404); // wiped with the rest
  }, 60_000);
});
