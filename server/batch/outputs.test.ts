// A task's outputs in its own reply: read by the node (one engine getArchive each), hashed and signed with
// the reply, capped in total (an output past the cap is named tooLarge and fetched as before).
import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTar } from "nanotar";
import { generateIdentity, ManualClock, taskReplyText, verifySignature } from "../../core/index.ts";
import { openStore } from "../../store/index.ts";
import { FakeEngine } from "../engine/fake.ts";
import type { ContainerEngine } from "../engine/index.ts";
import { callApp, testServerApp } from "../fixtures.ts";
import { collectOutputs } from "./outputs.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-batch-outputs-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The app over a FakeEngine whose every call is counted by method name. */
function makeApp(sign?: (text: string) => string) {
  const clock = new ManualClock();
  const fake = new FakeEngine({ clock });
  const calls = new Map<string, number>();
  const engine = new Proxy(fake, {
    get(target, name, receiver) {
      const v = Reflect.get(target, name, receiver);
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        calls.set(String(name), (calls.get(String(name)) ?? 0) + 1);
        return v.apply(target, args);
      };
    },
  }) as ContainerEngine;
  const { app } = testServerApp({
    engine,
    records: openStore(":memory:").containers,
    clock,
    dataDir: join(root, String(Math.random())),
    sign,
  });
  const call = (method: string, path: string, body?: unknown) => callApp(app, method, path, { json: body });
  return { call, calls, engine: fake };
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

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
    expect(Object.fromEntries(calls)).toEqual({ putArchive: 1, exec: 1, getArchive: 3 });
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
    const forged = [{ ...a, sha256: sha(new TextEncoder().encode("forged")) }, b, never];
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
