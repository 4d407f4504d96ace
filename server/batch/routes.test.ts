// The batch routes over FakeEngine: the input cache's check / upload / stats, a task as one engine exec
// in a directory the node made beforehand (every engine call counted), and its outputs in its reply (one
// engine getArchive each, hashed and signed with the reply, capped in total: past the cap `tooLarge`).
import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTar } from "nanotar";
import { generateIdentity, ManualClock, taskReplyText, verifySignature } from "../../core/index.ts";
import { openStore } from "../../store/index.ts";
import { FakeEngine } from "../engine/fake.ts";
import type { ContainerEngine } from "../engine/index.ts";
import { callApp, countingEngine, testServerApp } from "../fixtures.ts";
import { collectOutputs } from "./outputs.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-batch-routes-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let apps = 0;
const sha = (s: string | Uint8Array) => createHash("sha256").update(s).digest("hex");

/** The app over a FakeEngine whose every call is counted by method name. */
function makeApp(sign?: (text: string) => string) {
  const clock = new ManualClock();
  const fake = new FakeEngine({ clock });
  const { engine, calls } = countingEngine<ContainerEngine>(fake);
  const dataDir = join(root, `app-${apps++}`);
  const { app } = testServerApp({ engine, records: openStore(":memory:").containers, clock, dataDir, sign });
  const call = (method: string, path: string, body?: unknown) =>
    callApp(app, method, path, typeof body === "string" ? { raw: body } : { json: body });
  return { call, calls, dataDir, engine: fake, clock };
}

describe("the input cache routes", () => {
  test("check → missing; a corrupted upload is refused and leaves nothing; the right bytes are kept", async () => {
    const { call, dataDir } = makeApp();
    const content = "input bytes\n";
    const d = sha(content);
    expect((await call("POST", "/v1/inputs/check", { digests: [d] })).json).toEqual({ missing: [d] });
    const bad = await call("PUT", `/v1/inputs/${d}`, "input bytez\n");
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ code: "E_INVALID", field: "body" });
    expect(readdirSync(join(dataDir, "inputs"))).toEqual([]);
    expect(existsSync(join(dataDir, "uploads")) ? readdirSync(join(dataDir, "uploads")) : []).toEqual([]);
    expect((await call("POST", "/v1/inputs/check", { digests: [d] })).json).toEqual({ missing: [d] });

    const good = await call("PUT", `/v1/inputs/${d}`, content);
    expect(good.status).toBe(201);
    expect(good.json).toEqual({ digest: d, bytes: content.length, stored: true });
    expect((await call("POST", "/v1/inputs/check", { digests: [d] })).json).toEqual({ missing: [] });
    expect((await call("GET", "/v1/inputs/stats")).json).toMatchObject({
      blobs: 1,
      bytes: content.length,
      bytesReceived: content.length,
      refused: 1,
    });
    expect((await call("PUT", "/v1/inputs/not-a-digest", content)).json.error).toMatchObject({
      field: "digest",
    });
  });
});

describe("a batch task", () => {
  test("is one engine exec: its directory (inputs linked) was made beforehand, in runs of 8, 8, 16…", async () => {
    const { call, calls } = makeApp();
    const content = "shared\n";
    const d = sha(content);
    await call("PUT", `/v1/inputs/${d}`, content);
    const id = (await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] })).json
      .id as string;
    calls.clear();
    const dirs = new Set<string>();
    const TASKS = 20;
    for (let i = 0; i < TASKS; i++) {
      const r = await call("POST", `/v1/containers/${id}/tasks`, {
        command: ["sh", "-c", "cat in.txt; pwd; echo mine > own.txt"],
        inputs: [{ name: "in.txt", digest: d }],
      });
      expect(r.status).toBe(200);
      expect(r.json.stdout).toBe(`${content}${r.json.workingDir}\n`);
      dirs.add(r.json.workingDir);
    }
    expect(dirs.size).toBe(TASKS);
    for (const dir of dirs) expect(dir).toMatch(/^\/p2prc-task\/[0-9a-f]{8}-\d+$/);
    // 20 tasks: one exec each, and their directories in three runs (8, 8, then 16): three uploads; the
    // fake runs no shell, so its one task agent ends before the first task (remembered: plain execs after)
    expect(Object.fromEntries(calls)).toEqual({ exec: TASKS, putArchive: 3, openExec: 1 });
    expect((await call("GET", "/v1/inputs/stats")).json).toMatchObject({
      bytesServed: TASKS * content.length,
    });
  });

  test("the next run of directories is made before they run out (in the background)", async () => {
    const { call, calls } = makeApp();
    const id = (await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] })).json
      .id as string;
    calls.clear();
    const uploads: number[] = [];
    for (let i = 0; i < 8; i++) {
      expect((await call("POST", `/v1/containers/${id}/tasks`, { command: ["true"] })).status).toBe(200);
      uploads.push(calls.get("putArchive") ?? 0);
    }
    // the first run (8) with the first task; the second once 4 are left, before the 9th task needs one
    expect(uploads).toEqual([1, 1, 1, 2, 2, 2, 2, 2]);
  });

  test("an engine whose interactive exec fails: plain execs, the agent tried once per container", async () => {
    const { call, calls, engine, clock } = makeApp();
    engine.openExec = async () => {
      throw new Error("interactive exec is not supported here");
    };
    const id = (await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] })).json
      .id as string;
    calls.clear();
    for (let i = 0; i < 3; i++) {
      const r = await call("POST", `/v1/containers/${id}/tasks`, { command: ["echo", `t${i}`] });
      expect(r.json).toMatchObject({ exitCode: 0, stdout: `t${i}\n` });
    }
    expect(Object.fromEntries(calls)).toEqual({ openExec: 1, exec: 3, putArchive: 1 });
    expect((await call("GET", "/v1/tasks/stats")).json).toMatchObject({
      viaAgent: 0,
      viaExec: 3,
      noAgent: 1,
    });
    // tried again after 10 minutes (the container may have been stopped when its first agent opened)
    clock.advance(10 * 60_000);
    await call("POST", `/v1/containers/${id}/tasks`, { command: ["true"] });
    expect(calls.get("openExec")).toBe(2);
  });

  test("an agent that never says it is ready is given up after 10 s: nothing is written to it, a plain exec runs", async () => {
    const { call, calls, engine, clock } = makeApp();
    const written: string[] = [];
    let closed = false;
    engine.openExec = async () => ({
      output: new ReadableStream<Uint8Array>({ start: () => {} }), // says nothing, never ends
      write: async (d: Uint8Array) => {
        written.push(Buffer.from(d).toString());
      },
      endInput: () => {},
      resize: async () => {},
      exitCode: async () => undefined,
      close: () => {
        closed = true;
      },
    });
    const id = (await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] })).json
      .id as string;
    calls.clear();
    const pending = call("POST", `/v1/containers/${id}/tasks`, { command: ["echo", "plain"] });
    for (let i = 0; i < 50 && written.length === 0; i++) await Bun.sleep(1);
    clock.advance(10_000);
    expect((await pending).json).toMatchObject({ exitCode: 0, stdout: "plain\n" });
    expect(written).toHaveLength(1); // the prelude alone: no task reached it
    expect(written[0]).toContain(" ready");
    expect(closed).toBe(true);
    expect(Object.fromEntries(calls)).toEqual({ openExec: 1, exec: 1, putArchive: 1 });
  });

  test("an input the caller did not upload → 404 field inputs, and nothing runs", async () => {
    const { call, calls } = makeApp();
    const id = (await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] })).json
      .id as string;
    calls.clear();
    const r = await call("POST", `/v1/containers/${id}/tasks`, {
      command: ["true"],
      inputs: [{ name: "x", digest: sha("never sent") }],
    });
    expect(r.status).toBe(404);
    expect(r.json.error).toMatchObject({ code: "E_NOT_FOUND", field: "inputs" });
    expect(r.json.error.message).toContain(sha("never sent"));
    expect(calls.size).toBe(0);
    for (const name of ["../x", "a/b", "é".repeat(51)]) {
      const bad = await call("POST", `/v1/containers/${id}/tasks`, {
        command: ["true"],
        inputs: [{ name, digest: sha("x") }],
      });
      expect({ name, status: bad.status }).toEqual({ name, status: 400 });
    }
  });
});

describe("a task's reply", () => {
  test("is signed by the node's key over its container, exit and outputs; unsigned without a key", async () => {
    const key = generateIdentity();
    const { call } = makeApp((text) => key.sign(text));
    const id = (await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] })).json
      .id as string;
    const r = await call("POST", `/v1/containers/${id}/tasks`, { command: ["echo", "signed"] });
    expect(r.status).toBe(200);
    const fields = { containerId: id, ...r.json };
    expect(verifySignature(key.nodeId, taskReplyText(fields), r.json.signature)).toBe(true);
    // another output, another exit, another container: the signature does not fit
    for (const changed of [{ stdout: "forged\n" }, { exitCode: 1 }, { containerId: "other" }])
      expect(verifySignature(key.nodeId, taskReplyText({ ...fields, ...changed }), r.json.signature)).toBe(
        false,
      );
    const { call: plain } = makeApp();
    const id2 = (await plain("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] })).json
      .id as string;
    expect(
      (await plain("POST", `/v1/containers/${id2}/tasks`, { command: ["true"] })).json.signature,
    ).toBeUndefined();
  });
});

describe("a task's outputs in its reply", () => {
  test("each comes back as its tar with the tar's hash, signed with the reply; a missing one is named", async () => {
    const key = generateIdentity();
    const { call, calls } = makeApp((t) => key.sign(t));
    const id = (await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] })).json
      .id as string;
    calls.clear();
    const r = await call("POST", `/v1/containers/${id}/tasks`, {
      command: ["sh", "-c", "echo one > a.txt; echo two > /tmp/b.txt; echo ok"],
      outputs: ["a.txt", "/tmp/b.txt", "never.txt"],
    });
    expect(r.status).toBe(200);
    // the exec, and one archive read per output: no other engine call (the directory was made before)
    // but the task agent the fake cannot run (agent.test.ts: through an agent a file needs no call)
    expect(Object.fromEntries(calls)).toEqual({ putArchive: 1, exec: 1, getArchive: 3, openExec: 1 });
    const [a, b, never] = r.json.outputs;
    expect(never).toEqual({ path: "never.txt", state: "missing" });
    for (const [o, content] of [
      [a, "one\n"],
      [b, "two\n"],
    ]) {
      expect(o.state).toBe("included");
      const tar = Buffer.from(o.tar, "base64");
      expect(sha(tar)).toBe(o.sha256);
      expect(parseTar(tar).map((f) => f.text)).toContain(content);
    }
    const fields = { containerId: id, ...r.json };
    expect(verifySignature(key.nodeId, taskReplyText(fields), r.json.signature)).toBe(true);
    // another output's hash, or one left out: the signature does not fit
    const forged = [{ ...a, sha256: sha("forged") }, b, never];
    expect(verifySignature(key.nodeId, taskReplyText({ ...fields, outputs: forged }), r.json.signature)).toBe(
      false,
    );
    expect(verifySignature(key.nodeId, taskReplyText({ ...fields, outputs: [a, b] }), r.json.signature)).toBe(
      false,
    );
    // without `outputs` the reply has none, and its signed text is the one it always was
    const plain = await call("POST", `/v1/containers/${id}/tasks`, { command: ["echo", "x"] });
    expect(plain.json.outputs).toBeUndefined();
    expect(taskReplyText({ containerId: id, ...plain.json })).not.toContain("output");
  });

  test("past the cap an output is tooLarge (no bytes); a smaller one after it still fits", async () => {
    const { call, engine } = makeApp();
    const id = (await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] })).json
      .id as string;
    const r = await call("POST", `/v1/containers/${id}/tasks`, {
      command: ["sh", "-c", "echo small > s.txt"],
    });
    const dir = r.json.workingDir as string;
    const small = await collectOutputs(engine, id, dir, ["s.txt"], 1 << 20);
    const tarBytes = Buffer.from((small[0] as { tar: string }).tar, "base64").byteLength;
    // a cap that holds one small tar but not two
    const out = await collectOutputs(engine, id, dir, ["s.txt", "s.txt", `${dir}/s.txt`], tarBytes + 100);
    expect(out.map((o) => o.state)).toEqual(["included", "tooLarge", "tooLarge"]);
    expect(out[1]).toEqual({ path: "s.txt", state: "tooLarge" });
    const roomy = await collectOutputs(engine, id, dir, ["s.txt", "s.txt"], 2 * tarBytes);
    expect(roomy.map((o) => o.state)).toEqual(["included", "included"]);
  });

  test("a relative '..' or a NUL byte in an output is refused before anything runs", async () => {
    const { call, calls } = makeApp();
    const id = (await call("POST", "/v1/containers", { command: ["tail", "-f", "/dev/null"] })).json
      .id as string;
    calls.clear();
    for (const path of ["../x", "a/../../b", "a\0b", ""]) {
      const r = await call("POST", `/v1/containers/${id}/tasks`, { command: ["true"], outputs: [path] });
      expect({ path, status: r.status, field: r.json.error?.field }).toMatchObject({ path, status: 400 });
    }
    expect(calls.size).toBe(0);
  });
});
