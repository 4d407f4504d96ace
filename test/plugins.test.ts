// Plugins on the real engine (issue 14): install from a folder, a tar and a member node; the listing with
// a broken plugin beside good ones; web-hello on one container and on a group of three (each answers on
// its own handed-out port); the failing plugin's exit code and output, the others untouched; a plugin
// against someone else's container refused by the node; remove; a P2PRC-layout plugin listed, and run
// with Ansible when ansible-playbook is installed, else the one clear line.
// One TLS node in-process (the server), two client homes (alice, bob) that are its members.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import {
  groups,
  type NodeOptions,
  type PluginRunResult,
  plugins,
  type RunningNode,
  startContainer,
} from "../abstractions/index.ts";
import { memoryLogger } from "../core/index.ts";
import { installFromFolder, packPlugin } from "../plugins/index.ts";
import { nodeIdentity, p2prcCommand, removeTestNodes, runCommand, startTestNode } from "./support.ts";

const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///tmp/p2prc-engine/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const EXAMPLES = resolve(import.meta.dir, "../plugins/examples");
const root = mkdtempSync(join(tmpdir(), "p2prc-plugins-"));
const procs: Subprocess[] = [];
const home = (name: string) => join(root, name);
const alice: NodeOptions = { configDir: home("alice"), env: {}, logger: memoryLogger() };
const bob: NodeOptions = { configDir: home("bob"), env: {}, logger: memoryLogger() };
let srv: RunningNode;
let at = ""; // the node as host:port
const mine: string[] = []; // alice's three busybox containers
let group = "";
let groupPorts: number[] = []; // where the group's web-hello answers

/** A P2PRC-layout plugin (description.txt, ports.json, site.yml, hosts) that writes its port in the container. */
function p2prcLayout(dir: string) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "description.txt"),
    "Writes its handed-out port to /tmp/ansible-port (P2PRC layout)\n",
  );
  writeFileSync(join(dir, "ports.json"), '{"NumOfPorts": 1}\n');
  writeFileSync(
    join(dir, "site.yml"),
    "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: write the port\n      raw: echo {{index . 0}} > /tmp/ansible-port\n",
  );
  writeFileSync(join(dir, "hosts"), "all:\n  hosts:\n    master:\n      ansible_ssh_pass: password\n");
}

/**
 * ansible-playbook's path: installed, or installed now from Debian's packages (ansible-core without its
 * recommends, about a minute) when this runs as root with apt-get; P2PRC_TEST_NO_APT=1 skips that.
 */
function ansible(): string | undefined {
  const found = Bun.which("ansible-playbook");
  if (found || process.env.P2PRC_TEST_NO_APT === "1" || process.getuid?.() !== 0 || !Bun.which("apt-get")) {
    return found ?? undefined;
  }
  const policy = Bun.spawnSync(["apt-cache", "policy", "ansible-core"]).stdout.toString();
  if (!/Candidate: \d/.test(policy)) return undefined;
  Bun.spawnSync(["apt-get", "install", "-y", "-q", "--no-install-recommends", "ansible-core"], {
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    timeout: 180_000,
  });
  return Bun.which("ansible-playbook") ?? undefined;
}

/** What `cmd` prints in container `id`, run by the engine directly (not through p2prc). */
async function engineExec(id: string, cmd: string[]): Promise<string> {
  const exec = await docker.getContainer(id).exec({ Cmd: cmd, AttachStdout: true });
  return new Promise<string>((res) =>
    exec.start({}, (_e, s) => {
      let text = "";
      s?.on("data", (d: Buffer) => {
        text += d.toString();
      });
      s?.on("end", () => res(text));
    }),
  );
}

/** GET over plain HTTP on 127.0.0.1 (the published port), the body or undefined. */
async function page(port: number): Promise<string | undefined> {
  for (let i = 0; i < 30; i++) {
    const body = await fetch(`http://127.0.0.1:${port}/`)
      .then((r) => (r.ok ? r.text() : undefined))
      .catch(() => undefined);
    if (body !== undefined) return body;
    await Bun.sleep(100);
  }
  return undefined;
}

const cli = (args: string[], configDir = home("alice")) =>
  runCommand([...p2prcCommand(), ...args, "--config-dir", configDir], { cwd: root, env: {} }, procs);

beforeAll(async () => {
  const members = [nodeIdentity(home("alice")).nodeId, nodeIdentity(home("bob")).nodeId];
  ({ node: srv } = await startTestNode(home("srv"), { tls: true, trusted: members }));
  at = srv.url.replace(/^https:\/\//, "");
  // the node has a P2PRC-layout plugin installed in its home: members can install it from it
  const legacy = join(root, "p2prc-hello");
  p2prcLayout(legacy);
  installFromFolder(join(home("srv"), "plugins"), legacy);
  for (let i = 0; i < 3; i++) {
    const c = await startContainer(alice, at, {
      image: "p2prc-test/busybox",
      command: ["sleep", "3600"],
      ports: 2,
      ttlSeconds: 900,
      name: `plug${i}`,
    });
    mine.push(c.id);
  }
  group = (await groups.create(alice)).id;
  for (const id of mine) await groups.add(alice, group, id);
}, 60_000);

afterAll(async () => {
  await removeTestNodes(docker, procs, [srv?.nodeId]);
  await srv?.stop();
  rmSync(root, { recursive: true, force: true });
});

describe("install and list", () => {
  test("from a folder, a tar.gz and a member node (checked by sha256); a broken one is its own line", async () => {
    expect(await plugins.install(alice, join(EXAMPLES, "web-hello"))).toMatchObject({ name: "web-hello" });
    const tgz = join(root, "fail.tar.gz");
    writeFileSync(tgz, gzipSync(packPlugin(join(EXAMPLES, "fail"), "fail")));
    expect(await plugins.install(alice, tgz)).toMatchObject({ name: "fail", kind: "p2prc" });
    // a pinned hash that is not the node's copy's: refused, nothing installed
    const wrong = await plugins
      .install(alice, `peer:${at}/p2prc-hello#sha256=${"0".repeat(64)}`)
      .catch((e) => e);
    expect(wrong.message).toContain("sha256");
    expect(await plugins.ofNode(alice, at)).toEqual([
      {
        name: "p2prc-hello",
        kind: "p2prc-ansible",
        description: "Writes its handed-out port to /tmp/ansible-port (P2PRC layout)",
      },
    ]);
    const peer = await plugins.install(alice, `peer:${at}/p2prc-hello`);
    expect(peer).toMatchObject({ name: "p2prc-hello", kind: "p2prc-ansible", ports: 1 });
    // a node's plugins are for its members only
    const stranger = { configDir: home("stranger"), env: {}, logger: memoryLogger() };
    const refused = await plugins.install(stranger, `peer:${at}/p2prc-hello`).catch((e) => e);
    expect(refused.code).toBe("E_FORBIDDEN");

    mkdirSync(join(home("alice"), "plugins", "broken"));
    writeFileSync(join(home("alice"), "plugins", "broken", "plugin.json"), "{ not json");
    const r = await cli(["--vp"]);
    expect(r.code).toBe(0);
    const lines = r.out.trim().split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[0]).toStartWith("broken  BROKEN: plugin.json: not valid JSON");
    expect(lines[1]).toStartWith("fail  1.0.0  p2prc  0 ports");
    expect(lines[2]).toStartWith("p2prc-hello  -  p2prc-ansible  1 port  Writes its handed-out port");
    expect(lines[3]).toStartWith("web-hello  1.0.0  p2prc  1 port");
  }, 60_000);
});

describe("run", () => {
  test("web-hello on one container: the service answers on the handed-out port", async () => {
    const [r] = await plugins.run(alice, "web-hello", "plug0");
    expect(r).toMatchObject({ ok: true, exitCode: 0, container: mine[0] });
    expect(r?.stdout).toContain("web-hello: serving on container port");
    expect(r?.ports).toHaveLength(1);
    expect(await page(r?.ports[0]?.external as number)).toBe("hello from p2prc\n");
  }, 60_000);

  test("on a group of three at once, each on its own free port, with an option", async () => {
    const seen: PluginRunResult[] = [];
    const results = await plugins.run(alice, "web-hello", group, {
      options: { GREETING: "hello group" },
      onResult: (r) => seen.push(r),
    });
    expect(seen).toHaveLength(3);
    // in the group's order (its members by id)
    expect(results.map((r) => [r.container, r.ok])).toEqual([...mine].sort().map((id) => [id, true]));
    groupPorts = results.map((r) => r.ports[0]?.external as number);
    expect(new Set(groupPorts).size).toBe(3);
    for (const p of groupPorts) expect(await page(p)).toBe("hello group\n");
    // plug0's first port is still web-hello's from before: every published port is handed out now
    const full = await plugins.run(alice, "web-hello", "plug0");
    expect(full[0]).toMatchObject({ ok: false, code: "E_LIMIT" });
  }, 60_000);

  test("the failing plugin reports its exit code and output on each container; the others keep serving", async () => {
    const r = await cli(["--plugin", "fail", "--id", group]);
    expect(r.code).toBe(1);
    expect(r.errLines[0]).toBe("p2prc: plugin fail failed on 3 of 3 container(s)");
    for (const id of mine) {
      expect(r.out).toContain(`fail on ${id.slice(0, 12)} on ${at}: failed: exit 7`);
    }
    expect(r.out).toContain(`${mine[0]?.slice(0, 12)} out| fail: about to fail on purpose in`);
    expect(r.out).toContain(`${mine[1]?.slice(0, 12)} err| fail: this goes to stderr`);
    const json = (await plugins.run(alice, "fail", "plug1"))[0];
    expect(json).toMatchObject({ ok: false, exitCode: 7 });
    expect(json?.stderr).toBe("fail: this goes to stderr\n");
    // web-hello's services are untouched, and the failed runs took no port
    for (const p of groupPorts) expect(await page(p)).toBe("hello group\n");
    expect((await plugins.run(alice, "web-hello", "plug0"))[0]?.code).toBe("E_LIMIT");
  }, 60_000);

  test("output streams back while the plugin runs; past its timeout it is killed", async () => {
    const slow = join(root, "slow");
    mkdirSync(slow);
    writeFileSync(
      join(slow, "plugin.json"),
      '{"format":"p2prc-plugin/1","name":"slow","version":"1.0.0","timeoutSeconds":4}',
    );
    writeFileSync(join(slow, "run.sh"), "echo first\nsleep 1\necho second >&2\nsleep 60\necho never\n");
    await plugins.install(alice, slow);
    const t0 = Date.now();
    const chunks: { at: number; stream: string; text: string }[] = [];
    const [r] = await plugins.run(alice, "slow", "plug1", {
      onOutput: (_c, stream, text) => chunks.push({ at: Date.now() - t0, stream, text }),
    });
    const took = Date.now() - t0;
    expect(chunks[0]).toMatchObject({ stream: "stdout", text: "first\n" });
    expect(chunks.find((c) => c.stream === "stderr")?.text).toBe("second\n");
    // the first line came while the plugin still ran, long before its end
    expect(took - (chunks[0]?.at ?? took)).toBeGreaterThan(2000);
    expect(r).toMatchObject({
      ok: false,
      timedOut: true,
      exitCode: 137,
      stdout: "first\n",
      stderr: "second\n",
    });
    expect(took).toBeLessThan(15_000);
    await plugins.remove(alice, "slow");
  }, 60_000);

  test("against someone else's container: refused by the node, nothing copied in", async () => {
    const bobs = join(root, "bobs");
    mkdirSync(bobs);
    writeFileSync(join(bobs, "plugin.json"), '{"format":"p2prc-plugin/1","name":"bobs","version":"1.0.0"}');
    writeFileSync(join(bobs, "run.sh"), "touch /tmp/bob-was-here\n");
    await plugins.install(bob, bobs);
    const [r] = await plugins.run(bob, "bobs", { node: at, id: mine[2] as string });
    expect(r).toMatchObject({ ok: false, code: "E_NOT_FOUND" });
    expect(r?.exitCode).toBeUndefined();
    const cli2 = await cli(["--plugin", "bobs", "--id", `${at}/${mine[2]}`], home("bob"));
    expect(cli2.code).toBe(1);
    expect(cli2.out).toContain("not run:");
    const out = await engineExec(mine[2] as string, ["ls", "/tmp"]);
    expect(out).toContain("p2prc-plugin-web-hello"); // alice's run
    expect(out).not.toContain("p2prc-plugin-bobs");
    expect(out).not.toContain("bob-was-here");
  }, 60_000);

  test("a P2PRC-layout plugin without Ansible: one clear line, nothing run", async () => {
    // PATH names no directory with ansible-playbook in it (p2prc itself is run by its full path)
    const r = await runCommand(
      [...p2prcCommand(), "--plugin", "p2prc-hello", "--id", "plug0", "--config-dir", home("alice")],
      { cwd: root, env: { PATH: join(root, "no-bin") } },
      procs,
    );
    expect(r.code).toBe(2);
    expect(r.errLines[0]).toBe(
      "p2prc: plugin p2prc-hello is a P2PRC (Ansible) plugin and ansible-playbook is not installed on this machine",
    );
    expect(r.errLines[1]).toStartWith("hint: install Ansible");
    expect(r.out).toBe("");
  }, 30_000);

  test("a P2PRC-layout plugin with Ansible (Debian's ansible-core): site.yml gets the port, ssh by key", async () => {
    if (!ansible()) {
      console.warn(
        "plugins.test: ansible-playbook is not installed and could not be: the Ansible run is not tested",
      );
      return;
    }
    const key = join(root, "id_test");
    Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key]);
    const c = await startContainer(
      alice,
      at,
      {
        image: "p2prc-test/debian-sshd",
        ports: 1,
        ttlSeconds: 900,
        sshPublicKey: await Bun.file(`${key}.pub`).text(),
      },
      { identityFile: key },
    );
    const [r] = await plugins.run(alice, "p2prc-hello", c.id);
    expect(r?.error).toBeUndefined();
    expect(r).toMatchObject({ ok: true, exitCode: 0 });
    const port = r?.ports[0]?.internal;
    const out = await engineExec(c.id, ["cat", "/tmp/ansible-port"]);
    expect(out).toContain(String(port));
  }, 300_000);
});

describe("remove", () => {
  test("--rp removes; running it then says it is not installed", async () => {
    const r = await cli(["--rp", "fail"]);
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe("removed plugin fail");
    const again = await cli(["--plugin", "fail", "--id", "plug0"]);
    expect(again.errLines[0]).toBe("p2prc: no plugin fail is installed");
    expect((await plugins.list(alice)).map((p) => p.name)).toEqual(["broken", "p2prc-hello", "web-hello"]);
  }, 30_000);
});
