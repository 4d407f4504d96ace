// SSH into a task container with the real OpenSSH client: the server installs the caller's public
// key and starts sshd; the matching private key logs in, another key is refused.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { systemClock } from "../core/index.ts";
import { testServerApp } from "../server/fixtures.ts";
import { createDockerEngine } from "../server/index.ts";
import { openStore } from "../store/index.ts";
import { ssh } from "./support.ts";

const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const NODE_ID = randomBytes(32).toString("hex");
const dir = mkdtempSync(join(tmpdir(), "p2prc-ssh-"));
const store = openStore(":memory:");

const { app } = testServerApp({
  nodeId: NODE_ID,
  config: { defaultMemoryMb: 128 },
  engine: createDockerEngine({ host: DOCKER_HOST }),
  records: store.containers,
  clock: systemClock,
  dataDir: dir,
});

function keygen(name: string): string {
  const path = join(dir, name);
  const r = Bun.spawnSync([
    "ssh-keygen",
    "-q",
    "-t",
    "ed25519",
    "-N",
    "",
    "-C",
    `p2prc-test-${name}`,
    "-f",
    path,
  ]);
  if (r.exitCode !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.toString()}`);
  return path;
}

async function create(body: unknown) {
  const res = await app.request("http://127.0.0.1/v1/containers", {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
  // biome-ignore lint/suspicious/noExplicitAny: JSON body checked field by field
  return { status: res.status, json: (await res.json()) as any };
}

const own = () => docker.listContainers({ all: true, filters: { label: [`p2prc.node=${NODE_ID}`] } });

let goodKey = "";
let otherKey = "";

beforeAll(() => {
  goodKey = keygen("k");
  otherKey = keygen("other");
});

afterAll(async () => {
  for (const c of await own()) await docker.getContainer(c.Id).remove({ force: true });
  // Each owner's containers get a network of their own (Docs/Security.md); the engine has few to give.
  for (const n of await docker.listNetworks({ filters: { label: [`p2prc.node=${NODE_ID}`] } })) {
    await docker
      .getNetwork(n.Id)
      .remove()
      .catch(() => undefined);
  }
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("ssh into a task container", () => {
  let port = 0;
  let id = "";

  test("create with sshPublicKey → 201 with ssh.command 'ssh -p PORT root@HOST'", async () => {
    const pub = readFileSync(`${goodKey}.pub`, "utf8");
    const r = await create({ image: "p2prc-test/debian-sshd", sshPublicKey: pub });
    expect(r.status).toBe(201);
    id = r.json.id;
    expect(r.json.ssh).toBeDefined();
    port = r.json.ssh.port;
    expect(port).toBeGreaterThan(0);
    expect(r.json.ssh.user).toBe("root");
    expect(r.json.ssh.command).toBe(`ssh -p ${port} root@127.0.0.1`);
    expect(r.json.ports).toContainEqual({ internal: 22, external: port });
  }, 30_000);

  test("the container adds back exactly the documented capabilities sshd needs", async () => {
    const info = await docker.getContainer(id).inspect();
    expect(info.HostConfig.CapDrop).toContain("ALL");
    expect(info.HostConfig.Privileged).toBe(false);
    const added = (info.HostConfig.CapAdd ?? []).map((c: string) => c.replace(/^CAP_/, ""));
    // exactly the set Docs/Security.md lists (a denylist would let any new capability through)
    expect(added.sort()).toEqual(
      [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "KILL",
        "NET_BIND_SERVICE",
        "SETGID",
        "SETUID",
        "SYS_CHROOT",
      ].sort(),
    );
  });

  test("the real ssh client logs in with the matching key and runs a command", async () => {
    let last = { stdout: "", stderr: "", exitCode: -1 };
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      last = await ssh(goodKey, port, "echo ok-from-ssh");
      if (last.exitCode === 0) break;
      await Bun.sleep(300);
    }
    expect(last.stderr).not.toContain("Permission denied");
    expect(last.exitCode).toBe(0);
    expect(last.stdout.trim()).toBe("ok-from-ssh");
  }, 20_000);

  test("another key is refused", async () => {
    const r = await ssh(otherKey, port, "echo should-not-run");
    expect(r.exitCode).not.toBe(0);
    expect(r.stdout).not.toContain("should-not-run");
    expect(r.stderr).toContain("Permission denied");
  }, 20_000);

  test("authorized_keys is root-only", async () => {
    const res = await app.request(`http://127.0.0.1/v1/containers/${id}/exec`, {
      method: "POST",
      body: JSON.stringify({ command: ["stat", "-c", "%a %U", "/root/.ssh", "/root/.ssh/authorized_keys"] }),
    });
    const out = (await res.json()) as { stdout: string; exitCode: number };
    expect(out.exitCode).toBe(0);
    expect(out.stdout.trim().split("\n")).toEqual(["700 root", "600 root"]);
  });
});

describe("ssh command for an IPv6 host", () => {
  // A client that reached the node at http://[::1]:PORT must get a command OpenSSH accepts:
  // `root@[::1]` is not resolvable by ssh; `root@::1` (or `-p PORT ::1 -l root`) is.
  test("the command names the host without URL brackets", async () => {
    const pub = readFileSync(`${goodKey}.pub`, "utf8");
    const res = await app.request("http://[::1]/v1/containers", {
      method: "POST",
      body: JSON.stringify({ image: "p2prc-test/debian-sshd", sshPublicKey: pub }),
    });
    expect(res.status).toBe(201);
    const json = (await res.json()) as { ssh: { port: number; command: string } };
    const argv = json.ssh.command.split(" ");
    expect(argv[0]).toBe("ssh");
    // `ssh -G` prints the configuration the command resolves to, without connecting
    const g = Bun.spawnSync(["ssh", "-G", "-F", "/dev/null", ...argv.slice(1)]);
    const conf = g.stdout.toString();
    const get = (key: string) => conf.match(new RegExp(`^${key} (.*)$`, "m"))?.[1];
    expect({ user: get("user"), port: get("port"), hostname: get("hostname") }).toEqual({
      user: "root",
      port: String(json.ssh.port),
      hostname: "::1",
    });
  }, 30_000);
});

describe("ssh refused where it cannot work", () => {
  test("sshPublicKey on an image without sshd → 409 field sshPublicKey, no container left", async () => {
    const pub = readFileSync(`${goodKey}.pub`, "utf8");
    const before = (await own()).map((c) => c.Id);
    const r = await create({ image: "p2prc-test/busybox", sshPublicKey: pub });
    expect(r.status).toBe(409);
    expect(r.json.error.field).toBe("sshPublicKey");
    expect((await own()).map((c) => c.Id)).toEqual(before);
    expect(store.containers.list().filter((c) => !before.includes(c.id))).toEqual([]);
  }, 30_000);

  test("a private key (not a public key line) → 400 field body.sshPublicKey", async () => {
    const r = await create({ image: "p2prc-test/debian-sshd", sshPublicKey: readFileSync(goodKey, "utf8") });
    expect(r.status).toBe(400);
    expect(r.json.error.field).toBe("body.sshPublicKey");
  });

  test("two key lines (an injected second key) → 400", async () => {
    const pub = readFileSync(`${goodKey}.pub`, "utf8").trim();
    const other = readFileSync(`${otherKey}.pub`, "utf8").trim();
    const r = await create({ image: "p2prc-test/debian-sshd", sshPublicKey: `${pub}\n${other}\n` });
    expect(r.status).toBe(400);
    expect(r.json.error.field).toBe("body.sshPublicKey");
  });
});
