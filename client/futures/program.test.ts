// The future's program run here by this Bun (as the node's runtime runs it), and a node's reply read back:
// the signature and the attempt's nonce decide whether it is believed.
import { describe, expect, test } from "bun:test";
import { generateIdentity, taskReplyText } from "../../core/index.ts";
import { encodeArgs, futureProgram, readReply } from "./program.ts";

/** Runs the program as the node would (`p2prc -e program`, args and nonce in env) and signs the reply. */
function runHere(fn: string, args: unknown[], nonce = "n1", prelude = "") {
  const p = Bun.spawnSync([process.execPath, "-e", futureProgram(fn, prelude)], {
    env: { PATH: process.env.PATH ?? "", P2PRC_FUTURE_ARGS: encodeArgs(args), P2PRC_FUTURE_NONCE: nonce },
    cwd: "/tmp",
  });
  return {
    containerId: "c1",
    exitCode: p.exitCode,
    stdout: p.stdout.toString(),
    stderr: p.stderr.toString(),
  };
}

const key = generateIdentity();
const signed = <T extends { containerId: string; exitCode: number; stdout: string; stderr: string }>(
  r: T,
) => ({
  ...r,
  signature: key.sign(taskReplyText(r)),
});

describe("a future's program", () => {
  test("returns the value as a structured clone, with console output captured apart from raw stdout", () => {
    const r = signed(
      runHere(
        "async (m, n) => { console.log('got', n); console.warn({ w: 1 }); process.stdout.write('raw\\n'); return new Map([[n, m.get('k') + 1n]]); }",
        [new Map([["k", 41n]]), 7],
      ),
    );
    const out = readReply(r, key.nodeId, "n1");
    expect(out).toEqual({
      ok: true,
      value: new Map([[7, 42n]]),
      logs: [
        { level: "log", text: "got 7" },
        { level: "warn", text: "{\n  w: 1,\n}" },
      ],
      stdout: "raw\n",
    });
  });

  test("a throw comes back as name, message and stack; an unclonable value as a DataCloneError", () => {
    const thrown = readReply(
      signed(runHere("function f() { throw new TypeError('no') }", [])),
      key.nodeId,
      "n1",
    );
    expect(thrown).toMatchObject({ ok: false, error: { name: "TypeError", message: "no" } });
    expect(thrown.ok ? "" : thrown.error.stack).toContain("at f");
    const fnValue = readReply(signed(runHere("() => () => 1", [])), key.nodeId, "n1");
    expect(fnValue).toMatchObject({ ok: false, error: { name: "DataCloneError" } });
  });

  test("arguments that cannot be cloned are refused before sending", () => {
    expect(() => encodeArgs([() => 1])).toThrow("the arguments cannot be sent");
  });
});

describe("a node's reply", () => {
  const good = signed(runHere("() => 'mine'", [], "nonce-a"));

  test("signed by the node and carrying this attempt's nonce: believed", () => {
    expect(readReply(good, key.nodeId, "nonce-a")).toMatchObject({ ok: true, value: "mine" });
  });

  test("tampered, signed by another key, or unsigned: refused", () => {
    const forged = good.stdout.replace(/nonce-a:\S+/, `nonce-a:${encodeArgs(["forged"])}`);
    expect(forged).not.toBe(good.stdout);
    expect(() => readReply({ ...good, stdout: forged }, key.nodeId, "nonce-a")).toThrow("not signed by node");
    const other = generateIdentity();
    expect(() =>
      readReply({ ...good, signature: other.sign(taskReplyText(good)) }, key.nodeId, "nonce-a"),
    ).toThrow("not signed by node");
    expect(() => readReply({ ...good, signature: undefined }, key.nodeId, "nonce-a")).toThrow(
      "not signed by node",
    );
    expect(() => readReply({ ...good, containerId: "c2" }, key.nodeId, "nonce-a")).toThrow(
      "not signed by node",
    );
  });

  test("another attempt's reply (a replay) has no result for this nonce", () => {
    expect(() => readReply(good, key.nodeId, "nonce-b")).toThrow("without a result");
  });

  test("a runtime that died says so, with its stderr", () => {
    const dead = signed({ containerId: "c1", exitCode: 137, stdout: "", stderr: "Killed" });
    expect(() => readReply(dead, key.nodeId, "n1")).toThrow("exited with code 137 without a result: Killed");
  });
});
