// The client's container commands across real processes: two `p2prc --as-server` nodes on 127.0.0.1
// sharing the engine, and a separate client home that knows them through `--as` and `--us`. A
// container with sshd is reached with the real OpenSSH client; tracked containers and groups are
// checked through the CLI and against the engine. Everything runs over TLS (the default): the CLI
// pins each node's certificate from its signed record, the test pins it from the node's home.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import { type Identity, pinnedTls } from "../core/index.ts";
import {
  collectStderr,
  freePort,
  nodeIdentity,
  removeTestNodes,
  runCommand,
  signedFetch,
  ssh,
  waitFor,
} from "./support.ts";

const ROOT = resolve(import.meta.dir, "..");
const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///tmp/p2prc-engine/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const BUSYBOX = "p2prc-test/busybox";
const SSHD = "p2prc-test/debian-sshd";
const root = mkdtempSync(join(tmpdir(), "p2prc-client-"));
const clientHome = join(root, "client");
/** HOME of every CLI run: empty, so no ~/.ssh key is picked up unless --ssh-key is given. */
const fakeHome = join(root, "home");
mkdirSync(fakeHome, { recursive: true });
const procs: Subprocess[] = [];

interface Node {
  name: string;
  home: string;
  port: number;
  url: string;
  id: string;
  /** The node's own key: admin on it. */
  key?: Identity;
  proc?: Subprocess;
  stderr: string[];
}

/** TLS pinned to the certificate a node serves (read from its home). */
const pin = (n: Node) => pinnedTls(readFileSync(join(n.home, "identity", "tls.crt"), "utf8"));

/** Starts a node; on an open network (the default here) any signed node, the client included, is a member. */
async function startNode(name: string, bootstrap: string, openNetwork = true): Promise<Node> {
  const port = await freePort();
  const n: Node = {
    name,
    home: join(root, name),
    port,
    url: `https://127.0.0.1:${port}`,
    id: "",
    stderr: [],
  };
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli/main.ts"), "--as-server"], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: fakeHome,
      DOCKER_HOST,
      P2PRC: n.home,
      P2PRC_SERVER_HOST: "127.0.0.1",
      P2PRC_SERVER_PORT: String(port),
      P2PRC_MACHINE_NAME: name,
      P2PRC_BOOTSTRAP: bootstrap,
      P2PRC_GOSSIP_INTERVAL_MS: "300",
      P2PRC_DEFAULT_IMAGE: BUSYBOX,
      P2PRC_DEFAULT_MEMORY_MB: "64",
      P2PRC_DEFAULT_CPUS: "0.5",
      P2PRC_LOG_LEVEL: "warn",
      P2PRC_OPEN_NETWORK: String(openNetwork),
    },
    stdout: "ignore",
    stderr: "pipe",
  });
  procs.push(proc);
  n.proc = proc;
  collectStderr(proc, n.stderr);
  const health = await waitFor(
    `${name} up`,
    async () => {
      if (proc.exitCode !== null) throw new Error(`${name} exited ${proc.exitCode}: ${n.stderr.join("")}`);
      if (!existsSync(join(n.home, "identity", "tls.crt"))) return undefined;
      const res = await fetch(`${n.url}/v1/health`, { tls: pin(n) });
      return res.ok ? ((await res.json()) as { nodeId: string }) : undefined;
    },
    15_000,
  );
  n.id = health.nodeId;
  n.key = nodeIdentity(n.home);
  if (n.key.nodeId !== n.id) throw new Error(`${name}: its key is not the one it serves with`);
  return n;
}

/** A node's own (admin) key. */
const adminKey = (n: Node) => n.key as Identity;

/** Runs the CLI against the client home and waits for it. */
async function cli(args: string[]) {
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: fakeHome,
    DOCKER_HOST,
    P2PRC: clientHome,
    P2PRC_LOG_LEVEL: "warn",
  };
  return runCommand([process.execPath, join(ROOT, "cli/main.ts"), ...args], { cwd: root, env }, procs);
}

// biome-ignore lint/suspicious/noExplicitAny: JSON output checked field by field
async function cliJson(args: string[]): Promise<any> {
  const r = await cli([...args, "--json"]);
  if (r.code !== 0) throw new Error(`p2prc ${args.join(" ")} exited ${r.code}: ${r.err}`);
  return JSON.parse(r.out);
}

const engineIds = async (nodeId: string) =>
  (await docker.listContainers({ all: true, filters: { label: [`p2prc.node=${nodeId}`] } }))
    .map((c) => c.Id)
    .sort();

function keygen(name: string): string {
  const path = join(root, name);
  const r = Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", `p2prc-${name}`, "-f", path]);
  if (r.exitCode !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.toString()}`);
  return path;
}

let a: Node;
let b: Node;
/** A closed node (no open network) that trusts nobody but itself; started by its test. */
let closed: Node | undefined;
let key = "";

beforeAll(async () => {
  a = await startNode("cl-node-a", "");
  b = await startNode("cl-node-b", `127.0.0.1:${a.port}`);
  key = keygen("key");
  // node a learns b from b's bootstrap exchange; then the client learns both from a
  await waitFor(
    "node a knows b",
    async () => {
      const t = (await (await signedFetch(adminKey(a), `${a.url}/v1/p2p/table`, { tls: pin(a) })).json()) as {
        nodes: { id: string }[];
      };
      return t.nodes.some((v) => v.id === b.id) ? true : undefined;
    },
    10_000,
  );
  const added = await cli(["--as", `127.0.0.1:${a.port}`]);
  if (added.code !== 0) throw new Error(`--as failed: ${added.err}`);
  await waitFor(
    "client table knows both nodes with addresses",
    async () => {
      const rows = (await cliJson(["--us"])) as { id: string; port: number | null }[];
      const known = rows.filter((r) => r.port !== null).map((r) => r.id);
      return known.includes(a.id) && known.includes(b.id) ? true : undefined;
    },
    10_000,
    200,
  );
}, 40_000);

afterAll(async () => {
  await removeTestNodes(
    docker,
    procs,
    [a, b, closed].map((n) => n?.id),
  );
  rmSync(root, { recursive: true, force: true });
}, 30_000);

describe("containers on a chosen node", () => {
  let id = "";
  let sshPort = 0;
  let gid = "";

  test("--exec-container <name> --image debian-sshd --ssh-key --json → {id, node, image, ports, ssh} on that node", async () => {
    const r = await cliJson([
      "--exec-container",
      "cl-node-b",
      "--image",
      SSHD,
      "--ssh-key",
      `${key}.pub`,
      "--ttl",
      "600",
    ]);
    expect(Object.keys(r).sort()).toEqual(["id", "image", "node", "ports", "ssh"]);
    expect(r.id).toMatch(/^[0-9a-f]{64}$/);
    expect(r.node).toBe(b.id);
    expect(r.image).toBe(SSHD);
    sshPort = r.ssh.port;
    expect(sshPort).toBeGreaterThan(0);
    // the key is not one ssh tries by itself: the command names it (-i), so it works when pasted
    expect(r.ssh).toEqual({
      port: sshPort,
      user: "root",
      command: `ssh -i ${key} -p ${sshPort} root@127.0.0.1`,
    });
    expect(r.ports).toContainEqual({ internal: 22, external: sshPort });
    id = r.id;
    // it runs on node b, not a
    expect(await engineIds(b.id)).toContain(id);
    expect(await engineIds(a.id)).not.toContain(id);
  }, 30_000);

  test("the printed ssh command works with the private key", async () => {
    let last = { stdout: "", stderr: "", exitCode: -1 };
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      last = await ssh(key, sshPort, "echo ok");
      if (last.exitCode === 0) break;
      await Bun.sleep(300);
    }
    expect(last.stderr).not.toContain("Permission denied");
    expect(last.exitCode).toBe(0);
    expect(last.stdout.trim()).toBe("ok");
    // the command as printed, pasted into a shell whose HOME has no key of its own (only host-key
    // prompts are turned off, before the printed arguments)
    const printed = (await cliJson(["--tc"])).find((t: { id: string }) => t.id === id).ssh.command as string;
    const noPrompt = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes";
    const pasted = Bun.spawnSync(
      ["sh", "-c", `${printed.replace(/^ssh /, `ssh ${noPrompt} `)} echo pasted`],
      {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: fakeHome },
      },
    );
    expect(pasted.stderr.toString()).not.toContain("Permission denied");
    expect(pasted.stdout.toString().trim()).toBe("pasted");
  }, 20_000);

  test("--tc --json lists it as running, with its node and ssh command", async () => {
    const list = await cliJson(["--tc"]);
    const mine = list.find((t: { id: string }) => t.id === id);
    expect(mine).toMatchObject({ id, nodeId: b.id, nodeUrl: b.url, image: SSHD, state: "running" });
    expect(mine.ssh.command).toBe(`ssh -i ${key} -p ${sshPort} root@127.0.0.1`);
  }, 20_000);

  test("--touch <host:port> --cn <name> (human output) prints id, node, ports; -p 2 publishes two ports", async () => {
    const r = await cli(["--touch", `127.0.0.1:${a.port}`, "--cn", "cl-named", "-p", "2"]);
    expect(r.code).toBe(0);
    const line = (label: string) => r.out.split("\n").find((l) => l.startsWith(`${label}:`)) ?? "";
    const cid = line("container").split(/\s+/)[1] ?? "";
    expect(cid).toMatch(/^[0-9a-f]{64}$/);
    expect(line("node")).toContain(a.id);
    expect(line("node")).toContain("cl-node-a");
    expect(line("ports").match(/\d+->\d+/g)).toHaveLength(2);
    // no --ssh-key and no ~/.ssh key: no ssh line
    expect(line("ssh")).toBe("");
    expect(await engineIds(a.id)).toContain(cid);
    const tracked = await cliJson(["--tc"]);
    const row = tracked.find((t: { id: string }) => t.id === cid);
    expect(row).toMatchObject({ nodeId: a.id, state: "running" });
    // the node keeps the requested name (under its own p2prc- prefix)
    expect(row.name).toEndWith("cl-named");
    await cli(["--rm", "cl-node-a", "--id", cid]);
  }, 30_000);

  test("--cgroup, --group <gid> --id <cid>, --groups --json and --group <gid> show the member", async () => {
    const created = await cli(["--cgroup"]);
    expect(created.code).toBe(0);
    gid = created.out.trim();
    expect(gid).toMatch(/^grp[0-9a-f-]{36}$/);
    const added = await cliJson(["--group", gid, "--id", id]);
    expect(added.id).toBe(gid);
    expect(added.containers.map((c: { id: string }) => c.id)).toEqual([id]);
    // adding it again (by a 12-character prefix) keeps one membership
    const again = await cliJson(["--group", gid, "--id", id.slice(0, 12)]);
    expect(again.containers.map((c: { id: string }) => c.id)).toEqual([id]);
    const groups = await cliJson(["--groups"]);
    const g = groups.find((x: { id: string }) => x.id === gid);
    expect(g.containers.map((c: { id: string }) => c.id)).toEqual([id]);
    const shown = await cliJson(["--group", gid]);
    expect(shown.containers).toHaveLength(1);
    expect(shown.containers[0]).toMatchObject({ id, nodeId: b.id });
  }, 20_000);

  test("--group <gid> --id <cid> --rmcgroup removes the member; --rmgroup removes the group", async () => {
    const after = await cliJson(["--group", gid, "--id", id, "--rmcgroup"]);
    expect(after.containers).toEqual([]);
    expect((await cliJson(["--group", gid])).containers).toEqual([]);
    const removed = await cli(["--rmgroup", gid]);
    expect(removed.code).toBe(0);
    expect((await cliJson(["--groups"])).map((x: { id: string }) => x.id)).not.toContain(gid);
    const show = await cli(["--group", gid]);
    expect(show.code).not.toBe(0);
    // removing a group never removes its containers
    expect(await engineIds(b.id)).toContain(id);
  }, 20_000);

  test("--rm <node> --id <id> removes it from the node and from --tc", async () => {
    const r = await cli(["--rm", "cl-node-b", "--id", id]);
    expect(r.code).toBe(0);
    expect(await engineIds(b.id)).not.toContain(id);
    // not there even for node b's admin, who sees every container
    expect((await signedFetch(adminKey(b), `${b.url}/v1/containers/${id}`, { tls: pin(b) })).status).toBe(
      404,
    );
    const list = await cliJson(["--tc"]);
    expect(list.map((t: { id: string }) => t.id)).not.toContain(id);
    const human = await cli(["--tc"]);
    expect(human.out).not.toContain(id.slice(0, 12));
  }, 20_000);

  test("a container removed behind the client's back shows as gone in --tc", async () => {
    const r = await cliJson(["--exec-container", b.id.slice(0, 10), "--ttl", "300"]);
    expect(r.node).toBe(b.id);
    // removed by node b's own operator (its admin key)
    const del = await signedFetch(adminKey(b), `${b.url}/v1/containers/${r.id}`, {
      tls: pin(b),
      method: "DELETE",
    });
    expect(del.ok).toBe(true);
    const list = await cliJson(["--tc"]);
    expect(list.find((t: { id: string }) => t.id === r.id)).toMatchObject({ id: r.id, state: "gone" });
    const human = await cli(["--tc"]);
    const row = human.out.split("\n").find((l) => l.startsWith(r.id.slice(0, 12))) ?? "";
    expect(row).toContain("gone");
    // --rm of a gone container succeeds and stops tracking it
    expect((await cli(["--rm", "cl-node-b", "--id", r.id])).code).toBe(0);
    expect((await cliJson(["--tc"])).map((t: { id: string }) => t.id)).not.toContain(r.id);
  }, 20_000);

  test("--vi <node> lists the node's images; --specs <id prefix> names the node", async () => {
    const images = await cliJson(["--vi", "cl-node-a"]);
    expect(images.flatMap((i: { tags: string[] }) => i.tags)).toContain(`${BUSYBOX}:latest`);
    const specs = await cli(["--specs", a.id.slice(0, 8), "--json"]);
    expect(specs.code).toBe(0);
    expect(JSON.parse(specs.out)).toMatchObject({ nodeId: a.id, name: "cl-node-a" });
    // without --json: lines for people (item 5), not JSON
    const human = await cli(["--specs", a.id.slice(0, 8)]);
    expect(human.code).toBe(0);
    expect(human.out.split("\n")[0]).toBe(`node:     cl-node-a ${a.id}`);
    expect(human.out).toContain("engine:   reachable");
    expect(human.out).not.toContain("{");
  }, 20_000);
});

describe("client errors", () => {
  test("an unknown node → non-zero exit and a single error line naming it", async () => {
    const before = await engineIds(a.id);
    const r = await cli(["--exec-container", "no-such-node", "--image", BUSYBOX]);
    expect(r.code).not.toBe(0);
    expect(r.out).toBe("");
    const errors = r.errLines.filter((l) => !l.startsWith("hint:"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toStartWith("p2prc: ");
    expect(errors[0]).toContain("no-such-node");
    expect(r.err).not.toContain("    at ");
    expect(await engineIds(a.id)).toEqual(before);
  }, 20_000);

  test("--exec-container auto --cpus 999 → non-zero exit, nothing created, nothing tracked", async () => {
    const tracked = (await cliJson(["--tc"])).map((t: { id: string }) => t.id).sort();
    const engineA = await engineIds(a.id);
    const engineB = await engineIds(b.id);
    const r = await cli(["--exec-container", "auto", "--cpus", "999"]);
    expect(r.code).not.toBe(0);
    expect(r.out).toBe("");
    const errors = r.errLines.filter((l) => !l.startsWith("hint:"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain("cpus");
    expect((await cliJson(["--tc"])).map((t: { id: string }) => t.id).sort()).toEqual(tracked);
    expect(await engineIds(a.id)).toEqual(engineA);
    expect(await engineIds(b.id)).toEqual(engineB);
  }, 20_000);

  test("--group with an unknown container → non-zero exit; --rm without --id → usage error", async () => {
    const created = await cli(["--cgroup"]);
    const gid = created.out.trim();
    const r = await cli(["--group", gid, "--id", "ffffffffffff"]);
    expect(r.code).not.toBe(0);
    expect(r.errLines[0]).toStartWith("p2prc: ");
    expect((await cliJson(["--group", gid])).containers).toEqual([]);
    await cli(["--rmgroup", gid]);
    const rm = await cli(["--rm", "cl-node-a"]);
    expect(rm.code).not.toBe(0);
    expect(rm.err).toContain("--id");
  }, 20_000);

  test("--gpu on a node without GPUs → non-zero exit, nothing created, nothing tracked", async () => {
    const tracked = (await cliJson(["--tc"])).map((t: { id: string }) => t.id).sort();
    const before = await engineIds(a.id);
    const r = await cli(["--exec-container", "cl-node-a", "--gpu"]);
    expect(r.code).not.toBe(0);
    expect(r.errLines[0]).toStartWith("p2prc: ");
    expect(r.err.toLowerCase()).toContain("gpu");
    expect(await engineIds(a.id)).toEqual(before);
    expect((await cliJson(["--tc"])).map((t: { id: string }) => t.id).sort()).toEqual(tracked);
  }, 20_000);

  test("--rm naming the wrong node never forgets a container that still runs", async () => {
    const c = await cliJson(["--exec-container", "cl-node-b", "--ttl", "300"]);
    try {
      const r = await cli(["--rm", "cl-node-a", "--id", c.id]);
      const stillRunning = (await engineIds(b.id)).includes(c.id);
      const stillTracked = (await cliJson(["--tc"])).some((t: { id: string }) => t.id === c.id);
      // "removed" must mean removed; otherwise the command fails and the container stays tracked
      expect({ code: r.code, stillRunning, stillTracked, out: r.out.trim() }).toEqual(
        r.code === 0
          ? { code: 0, stillRunning: false, stillTracked: false, out: r.out.trim() }
          : { code: r.code, stillRunning: true, stillTracked: true, out: r.out.trim() },
      );
    } finally {
      await signedFetch(adminKey(b), `${b.url}/v1/containers/${c.id}`, {
        tls: pin(b),
        method: "DELETE",
      });
      await cli(["--rm", "cl-node-b", "--id", c.id]);
    }
  }, 20_000);

  test("a node that does not trust the client's key → non-zero exit, one error line (403, not a member), nothing created", async () => {
    closed = await startNode("cl-node-closed", "", false);
    const tracked = (await cliJson(["--tc"])).map((t: { id: string }) => t.id).sort();
    const before = await engineIds(closed.id);
    // the node itself is the only member: the client's key is not in its trusted list
    expect(nodeIdentity(clientHome).nodeId).not.toBe(closed.id);
    const r = await cli(["--exec-container", `127.0.0.1:${closed.port}`, "--image", BUSYBOX]);
    expect(r.code).not.toBe(0);
    expect(r.out).toBe("");
    const errors = r.errLines.filter((l) => !l.startsWith("hint:"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toStartWith("p2prc: ");
    expect(errors[0]).toContain("not a member");
    expect(errors[0]).toContain(`127.0.0.1:${closed.port}`);
    expect(r.err).not.toContain("    at ");
    // the node's answer to that request signed with the client's key: 403, not a member
    const body = JSON.stringify({ image: BUSYBOX });
    const direct = await signedFetch(nodeIdentity(clientHome), `${closed.url}/v1/containers`, {
      tls: pin(closed),
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    expect(direct.status).toBe(403);
    expect(await direct.text()).toContain("not a member");
    expect(await engineIds(closed.id)).toEqual(before);
    expect(before).toEqual([]);
    expect((await cliJson(["--tc"])).map((t: { id: string }) => t.id).sort()).toEqual(tracked);
    // its own operator is still let in, and sees no container there
    const list = await signedFetch(adminKey(closed), `${closed.url}/v1/containers`, { tls: pin(closed) });
    expect(list.status).toBe(200);
    expect(((await list.json()) as { containers: unknown[] }).containers).toEqual([]);
    (closed.proc as Subprocess).kill(9);
    await (closed.proc as Subprocess).exited;
  }, 30_000);

  test("the ssh key file is read from --ssh-key; a missing file is a usage error, nothing is created", async () => {
    const before = await engineIds(b.id);
    const r = await cli(["--exec-container", "cl-node-b", "--ssh-key", join(root, "missing.pub")]);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("missing.pub");
    expect(await engineIds(b.id)).toEqual(before);
    expect(readFileSync(`${key}.pub`, "utf8")).toStartWith("ssh-ed25519 ");
  }, 20_000);
});

describe("a node that went away", () => {
  test("its tracked container shows as unreachable in --tc (last: node b is killed)", async () => {
    const r = await cliJson(["--exec-container", "cl-node-b", "--ttl", "300"]);
    (b.proc as Subprocess).kill(9);
    await (b.proc as Subprocess).exited;
    const list = await cliJson(["--tc"]);
    expect(list.find((t: { id: string }) => t.id === r.id)).toMatchObject({
      id: r.id,
      nodeId: b.id,
      state: "unreachable",
    });
  }, 20_000);
});
