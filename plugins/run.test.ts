import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ManualClock } from "../core/index.ts";
import { openStore } from "../store/index.ts";
import { installFromFolder } from "./installed.ts";
import { portCandidates, renderSite } from "./ports.ts";
import { type ContainerAccess, optionEnv, runOnEach, runPlugin } from "./run.ts";

const EXAMPLES = resolve(import.meta.dir, "examples");
const root = mkdtempSync(join(tmpdir(), "p2prc-plugin-run-"));
const store = openStore(":memory:");
afterAll(() => {
  store.close();
  rmSync(root, { recursive: true, force: true });
});
const web = installFromFolder(root, join(EXAMPLES, "web-hello"));
const fail = installFromFolder(root, join(EXAMPLES, "fail"));
const deps = { ports: store.client, clock: new ManualClock(1000) };

/**
 * A container that records what was copied and run, and answers the run's shell steps (start, poll,
 * collect) as if the entry wrote "out\n" (and "bad\n" on stderr when it fails) and exited `exitCode`.
 */
function fakeContainer(exitCode = 0) {
  const calls: { copied: string[]; env?: Record<string, string>; command?: string[]; polls: number } = {
    copied: [],
    polls: 0,
  };
  const stderr = exitCode ? "bad\n" : "";
  const access: ContainerAccess = {
    copyIn: async (_local, path) => {
      calls.copied.push(path);
    },
    exec: async (command, o) => {
      const script = command[2] ?? "";
      if (script.includes("mkdir -p")) {
        calls.command = command;
        calls.env = o.env;
        return { exitCode: 0, stdout: "", stderr: "" };
      }
      if (script.includes("exit $d")) {
        calls.polls++;
        return { exitCode: 1, stdout: "out\n", stderr };
      }
      return { exitCode, stdout: "out\n", stderr }; // the whole output, and the exit code
    },
  };
  return { access, calls };
}

const target = (id: string) => ({
  id,
  node: "127.0.0.1:8088",
  ports: [
    { internal: 22, external: 40022 },
    { internal: 41001, external: 41001 },
    { internal: 41002, external: 41002 },
  ],
  ssh: { host: "127.0.0.1", port: 40022, user: "root" },
});

describe("runPlugin", () => {
  test("copies the plugin in, runs its entry with its ports and options as env, keeps the port used", async () => {
    const c = fakeContainer();
    const live: string[] = [];
    const r = await runPlugin(
      web,
      target("c1"),
      c.access,
      { ...deps, onOutput: (t, stream, text) => live.push(`${t.id} ${stream} ${text}`) },
      { GREETING: "hi" },
    );
    expect(live).toEqual(["c1 stdout out\n"]);
    expect(r).toMatchObject({
      ok: true,
      exitCode: 0,
      stdout: "out\n",
      ports: [{ internal: 41001, external: 41001 }],
    });
    expect(c.calls.copied).toEqual(["/tmp/p2prc-plugin-web-hello"]);
    // started in the background with the entry as $2; its output fetched while it runs
    expect(c.calls.command?.slice(3)).toEqual([
      "sh",
      "/tmp/p2prc-plugin-web-hello.run",
      "/tmp/p2prc-plugin-web-hello/run.sh",
    ]);
    expect(c.calls.polls).toBe(1);
    expect(c.calls.env).toMatchObject({
      GREETING: "hi",
      P2PRC_PORT_1: "41001",
      P2PRC_PORT_1_EXTERNAL: "41001",
      P2PRC_PORTS: "41001",
      P2PRC_PLUGIN_DIR: "/tmp/p2prc-plugin-web-hello",
      P2PRC_CONTAINER_ID: "c1",
    });
    // a second plugin on the same container gets the next port; the ssh port is never handed out
    const again = await runPlugin(web, target("c1"), fakeContainer().access, deps);
    expect(again.ports).toEqual([{ internal: 41002, external: 41002 }]);
    const none = await runPlugin(web, target("c1"), fakeContainer().access, deps);
    expect(none).toMatchObject({ ok: false, code: "E_LIMIT" });
    expect(none.error).toContain("too few free published ports");
  });

  test("a failure reports exit code and output and gives its ports back", async () => {
    const r = await runPlugin(web, target("c2"), fakeContainer(7).access, deps);
    expect(r).toMatchObject({ ok: false, exitCode: 7, stderr: "bad\n" });
    expect(store.client.claimedPorts("c2")).toEqual([]);
    const refused = await runPlugin(
      fail,
      target("c3"),
      {
        copyIn: async () => {
          throw Object.assign(new Error("no container c3"), {});
        },
        exec: async () => ({ exitCode: 0, stdout: "", stderr: "" }),
      },
      deps,
    );
    expect(refused).toMatchObject({ ok: false, error: "no container c3" });
    expect(refused.exitCode).toBeUndefined();
  });

  test("a group: every container runs, results come as each finishes, one failure stops none", async () => {
    const seen: string[] = [];
    const results = await runOnEach(
      ["g1", "g2", "g3"],
      (id) => runPlugin(web, target(id), fakeContainer(id === "g2" ? 1 : 0).access, deps),
      (r) => seen.push(r.container),
    );
    expect(results.map((r) => [r.container, r.ok])).toEqual([
      ["g1", true],
      ["g2", false],
      ["g3", true],
    ]);
    expect(seen.sort()).toEqual(["g1", "g2", "g3"]);
  });

  test("options: defaults, the user's values, and an undeclared one refused", () => {
    expect(optionEnv(web)).toEqual({ GREETING: "hello from p2prc" });
    expect(() => optionEnv(web, { GREETNG: "x" })).toThrow("has no option GREETNG");
  });
});

describe("P2PRC's template and ports", () => {
  test("{{index . N}} is the Nth port; literals and Jinja stay", () => {
    const site =
      '- hosts: all\n  vars: { port: {{index . 0}}, b: {{ index . 1 }} }\n  x: "{{ jinja }}" {{"{{"}}';
    expect(renderSite(site, [8080, 9090])).toBe(
      '- hosts: all\n  vars: { port: 8080, b: 9090 }\n  x: "{{ jinja }}" {{',
    );
    expect(() => renderSite("{{index . 2}}", [1])).toThrow("handed 1 port");
  });

  test("the ssh port is not a candidate", () => {
    expect(portCandidates(target("x").ports, 40022)).toEqual([41001, 41002]);
    expect(portCandidates([{ internal: 22, external: 22 }], undefined)).toEqual([22]);
  });
});
