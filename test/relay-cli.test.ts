// The CLI side of the relay with real nodes (in-process) and the real p2prc and ssh binaries: alice is
// relayed through carol; bob's node knows both from gossip only. `--touch alice` prints an ssh command
// that works as printed (a ProxyCommand of p2prc), and `--mp` maps a port of alice's for members.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import type { RunningNode } from "../abstractions/index.ts";
import { runCli } from "../cli/index.ts";
import { generateIdentity, pinnedTls } from "../core/index.ts";
import { openRelayForwarder } from "../p2p/index.ts";
import {
  freePort,
  nodeIdentity,
  p2prcCommand,
  removeTestNodes,
  runCommand,
  signedFetch,
  startTestNode,
  waitFor,
} from "./support.ts";

const root = mkdtempSync(join(tmpdir(), "p2prc-relay-cli-"));
const bob = nodeIdentity(join(root, "bob"));
let carol: RunningNode; // public, relays
let alice: RunningNode; // behind the NAT
let bobNode: RunningNode;
const procs: Subprocess[] = [];

let publicPort: number; // the one public port carol may open
let httpPort: number; // carol's HTTP port, routing by Host (--dn)

beforeAll(async () => {
  publicPort = await freePort();
  httpPort = await freePort();
  const aliceId = nodeIdentity(join(root, "alice")).nodeId;
  ({ node: carol } = await startTestNode(join(root, "carol"), {
    tls: true,
    relay: true,
    relayPort: await freePort(),
    relayMaxPublicPorts: 1,
    relayPublicPortMin: publicPort,
    relayPublicPortMax: publicPort,
    relayHttpPort: httpPort,
    trusted: [aliceId, bob.nodeId],
  }));
  ({ node: alice } = await startTestNode(join(root, "alice"), {
    tls: true,
    bootstrap: [carol.url.replace(/^https:\/\//, "")],
    behindNat: "true",
    trusted: [bob.nodeId],
  }));
  ({ node: bobNode } = await startTestNode(join(root, "bob"), {
    tls: true,
    bootstrap: [carol.url.replace(/^https:\/\//, "")],
    trusted: [carol.nodeId, aliceId],
    gossipIntervalMs: 200,
  }));
  await waitFor("the tunnel", async () => alice.relayAgent?.current, 10_000);
  // bob's table holds alice's record (relayed, via carol) and carol's (with her relay port)
  await waitFor(
    "alice relayed via carol, at bob",
    async () => {
      const res = await signedFetch(bob, `${bobNode.url}/v1/p2p/table`, {
        tls: pinnedTls(bobNode.certPem as string),
      });
      const { nodes } = (await res.json()) as { nodes: { id: string; reach?: string; relays?: string[] }[] };
      const a = nodes.find((n) => n.id === alice.nodeId);
      const named = a?.reach === "relay" && a.relays?.includes(carol.nodeId);
      return named && nodes.some((n) => n.id === carol.nodeId) ? true : undefined;
    },
    20_000,
  );
}, 60_000);

afterAll(async () => {
  const docker = new Docker({ socketPath: (process.env.DOCKER_HOST ?? "").replace(/^unix:\/\//, "") });
  await removeTestNodes(docker, procs, [alice?.nodeId]);
  await bobNode?.stop();
  await alice?.stop();
  await carol?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** Runs p2prc (the binary, or bun cli/main.ts) as bob would, to its end. */
const p2prc = (args: string[]) => runCommand([...p2prcCommand(), ...args], { cwd: root, env: {} }, procs);

test("--touch alice prints an ssh command that works as printed: a ProxyCommand of p2prc through carol", async () => {
  const key = join(root, "id");
  expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key]).exitCode).toBe(0);
  const bobHome = join(root, "bob");
  const touched = await p2prc([
    "--touch",
    alice.nodeId.slice(0, 12),
    "--image",
    "p2prc-test/debian-sshd",
    "--ssh-key",
    `${key}.pub`,
    "--config-dir",
    bobHome,
  ]);
  expect(touched.err).toBe("");
  const command = /^ssh:\s+(.*)$/m.exec(touched.out)?.[1] ?? "";
  expect(command).toMatch(
    // the key is not one ssh tries by itself, so the command names it (-i) as for a direct node
    new RegExp(
      `^ssh -i ${key} -o ProxyCommand='.* proxy ${alice.nodeId} %p --config-dir ${bobHome}' -p \\d+ root@`,
    ),
  );
  // as printed, plus what a test needs to run it unattended (no agent, no known_hosts prompt)
  const unattended = command.replace(
    /^ssh /,
    `ssh -F /dev/null -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5 `,
  );
  const before = carol.relay?.stats.streamsOpened ?? 0;
  let last = { out: "", err: "", code: -1, errLines: [] as string[] };
  for (const deadline = Date.now() + 20_000; Date.now() < deadline; await Bun.sleep(300)) {
    const env = process.env as Record<string, string>;
    last = await runCommand(["sh", "-c", `${unattended} echo ok-as-printed`], { cwd: root, env }, procs);
    if (last.code === 0) break;
  }
  expect(last.err).toBe("");
  expect(last.out.trim()).toBe("ok-as-printed");
  expect(carol.relay?.stats.streamsOpened).toBeGreaterThan(before);
}, 90_000);

test("alice's --mp: members reach her service through carol with p2prc forward; others are refused; rm closes it", async () => {
  const service = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () => new Response("hello from alice"),
  });
  try {
    const port = service.port as number;
    const out: string[] = [];
    const io = { out: (t: string) => out.push(t), err: (t: string) => out.push(`ERR ${t}`) };
    const aliceHome = ["--config-dir", join(root, "alice")];
    expect(await runCli(["--mp", String(port), ...aliceHome], { io, env: {} })).toBe(0);
    const text = out.join("\n");
    expect(text).toContain(
      `mapped:  ${port}  → 127.0.0.1:${port}  members via relay ${carol.nodeId.slice(0, 12)}`,
    );
    expect(text).toContain(`members: p2prc forward ${alice.nodeId} ${port} --local ${port}`);

    // bob: a loopback listener for it, as printed (another local port)
    const local = await freePort();
    const fwd = Bun.spawn(
      [
        ...p2prcCommand(),
        "forward",
        alice.nodeId,
        String(port),
        "--local",
        String(local),
        "--config-dir",
        join(root, "bob"),
      ],
      { stdout: "pipe", stderr: "pipe", env: {} },
    );
    procs.push(fwd);
    const reader = fwd.stdout.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    if (!first) throw new Error(`p2prc forward: ${await new Response(fwd.stderr).text()}`);
    expect(first).toContain(`forwarding 127.0.0.1:${local} →`);
    expect(await (await fetch(`http://127.0.0.1:${local}/`)).text()).toBe("hello from alice");

    // a stranger's stream is refused by the relay (not a member), and the service sees nothing of it
    await using theirs = await openRelayForwarder({
      relay: { host: "127.0.0.1", port: carol.relay?.port as number },
      target: alice.nodeId,
      identity: generateIdentity(),
      port,
    });
    expect(
      await fetch(`http://127.0.0.1:${theirs.port}/`).then(
        () => "answered",
        () => "refused",
      ),
    ).toBe("refused");

    // an open connection through the mapping, then the mapping removed: it is closed, new ones refused
    let closed = false;
    let answered!: () => void;
    const answer = new Promise<void>((resolve) => {
      answered = resolve;
    });
    const conn = await Bun.connect({
      hostname: "127.0.0.1",
      port: local,
      socket: {
        data: () => answered(),
        close: () => {
          closed = true;
        },
      },
    });
    conn.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await answer;
    out.length = 0;
    expect(await runCli(["mappings", "rm", String(port), ...aliceHome], { io, env: {} })).toBe(0);
    expect(out.join("\n")).toContain(`removed mapping ${port}`);
    await waitFor("the mapped connection closed", async () => (closed ? true : undefined), 5000);
    const raw = await new Promise<string>((resolve) => {
      let got = "";
      Bun.connect({
        hostname: "127.0.0.1",
        port: local,
        socket: {
          open: (s) => {
            s.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
          },
          data: (_s, d) => {
            got += Buffer.from(d).toString();
          },
          close: () => resolve(got),
        },
      });
    });
    expect(raw).toBe(""); // refused: the forwarder closes it without an answer
    expect(
      await fetch(`http://127.0.0.1:${local}/`).then(
        async (r) => `answered ${r.status} ${await r.text()}`,
        () => "refused",
      ),
    ).toBe("refused");
    fwd.kill("SIGTERM");
    expect(await fwd.exited).toBe(0);
  } finally {
    service.stop(true);
  }
}, 60_000);

test("alice's --mp --public: anyone reaches it at carol's public port, within carol's limit; rm closes it", async () => {
  const service = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("public hello") });
  try {
    const out: string[] = [];
    const io = { out: (t: string) => out.push(t), err: (t: string) => out.push(`ERR ${t}`) };
    const aliceHome = ["--config-dir", join(root, "alice")];
    expect(await runCli(["--mp", String(service.port), "--public", ...aliceHome], { io, env: {} })).toBe(0);
    expect(out.join("\n")).toContain(`public:  127.0.0.1:${publicPort}  (anyone)`);
    // anyone: plain HTTP to the relay's port, no key
    expect(await (await fetch(`http://127.0.0.1:${publicPort}/`)).text()).toBe("public hello");
    // carol opens one public port at most: a second public mapping is refused, in one line
    const other = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("no") });
    const otherPort = String(other.port);
    out.length = 0;
    expect(await runCli(["--mp", otherPort, "--public", ...aliceHome], { io, env: {} })).toBe(1);
    expect(out.at(-1)).toBe(
      "ERR p2prc: the relay refused a public port: relay at its limit of 1 public ports",
    );
    other.stop(true);
    expect(await runCli(["mappings", "rm", otherPort, ...aliceHome], { io, env: {} })).toBe(0);
    expect(await runCli(["mappings", "rm", String(service.port), ...aliceHome], { io, env: {} })).toBe(0);
    await waitFor(
      "the public port closed",
      async () => (carol.relay?.stats.publicPorts === 0 ? true : undefined),
      5000,
    );
    expect(
      await fetch(`http://127.0.0.1:${publicPort}/`).then(
        () => "answered",
        () => "refused",
      ),
    ).toBe("refused");
    // --dn: the same service by its Host on carol's HTTP port (P2PRC's --dn)
    out.length = 0;
    expect(
      await runCli(["--mp", String(service.port), "--dn", "alice.test", ...aliceHome], { io, env: {} }),
    ).toBe(0);
    expect(out.join("\n")).toContain(
      `public:  http://alice.test:${httpPort}/ (Host alice.test at 127.0.0.1:${httpPort})`,
    );
    const viaHost = await fetch(`http://127.0.0.1:${httpPort}/`, {
      headers: { host: "alice.test", connection: "close" }, // routing is per connection: no reuse
    });
    expect(await viaHost.text()).toBe("public hello");
    const unknown = await fetch(`http://127.0.0.1:${httpPort}/`, {
      headers: { host: "nobody.test", connection: "close" },
    });
    expect(unknown.status).toBe(404);
    expect(await runCli(["mappings", "rm", String(service.port), ...aliceHome], { io, env: {} })).toBe(0);
  } finally {
    service.stop(true);
  }
}, 60_000);
