// The NAT relay's user story (issue 20), on the NAT lab (test/lab/nat.ts, Docs/Lab.md), with one lab for
// the whole file: alice's node at home behind the router (her own engine), carol's and dave's nodes on
// the public side offering to relay, bob's node on the client host. All four are in cluster `friends`,
// hosted by carol; alice is given no relay (she picks one). Bob does everything from his own host with
// the real CLI and the real ssh client.
// Every step of the story is a test; Docs/Lab.md says what each checks.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { shellQuote, signRequest } from "../core/index.ts";
import {
  LAB_ADDR,
  type LabHost,
  type LabResult,
  type NatLab,
  natLabUnavailable,
  runP2prc,
  spawnLabNode,
  startNatLab,
} from "./lab/nat.ts";
import { nodeIdentity, p2prcCommand, type SpawnedNode, waitFor } from "./support.ts";

const unavailable = natLabUnavailable();
if (unavailable) console.warn(`test/nat-story.test.ts skipped: ${unavailable}`);

const SSHD = "p2prc-test/debian-sshd";
const BUSYBOX = "p2prc-test/busybox";
const NAMES = ["carol", "dave", "bob", "alice"] as const;
type Name = (typeof NAMES)[number];
const HOST: Record<Name, LabHost> = { carol: "relay", dave: "relay2", bob: "client", alice: "home" };

describe.skipIf(unavailable !== undefined)("the NAT user story", () => {
  let lab: NatLab;
  const procs: Subprocess[] = [];
  const home = {} as Record<Name, string>;
  const id = {} as Record<Name, string>;
  const node = {} as Record<Name, SpawnedNode>;
  /** The ssh command `--touch alice` printed (its container is removed with the lab's engine). */
  let sshCommand = "";

  /** `p2prc <args>` on bob's host, as bob. */
  const bob = (args: string[], timeoutMs = 60_000): Promise<LabResult> =>
    runP2prc(lab, "client", home.bob, args, { timeoutMs });

  /** `p2prc --touch alice --image <image> --ssh-key <key> --json [-- command]` on bob's host. */
  const touchAlice = (image: string, sshKey: string, command: string[] = []) => {
    const args = ["--touch", "alice", "--image", image, "--ssh-key", sshKey, "--json"];
    return bob(command.length ? [...args, "--", ...command] : args);
  };

  const start = (name: Name, env: Record<string, string | undefined> = {}) =>
    spawnLabNode(lab, HOST[name], {
      home: home[name],
      procs,
      name,
      env: {
        P2PRC_MACHINE_NAME: name,
        P2PRC_GOSSIP_INTERVAL_MS: "300",
        P2PRC_DEFAULT_IMAGE: BUSYBOX,
        P2PRC_DEFAULT_MEMORY_MB: "64",
        P2PRC_LOG_LEVEL: "warn",
        ...env,
      },
    });

  beforeAll(async () => {
    const t0 = performance.now();
    lab = await startNatLab({ images: [BUSYBOX, SSHD] });
    for (const name of NAMES) {
      home[name] = join(lab.dir, name);
      mkdirSync(home[name], { recursive: true });
      id[name] = nodeIdentity(home[name]).nodeId;
    }
    // carol (public) serves and relays, and hosts `friends` with the other three as members
    node.carol = await start("carol", { P2PRC_RELAY: "true" });
    const hosted = await runP2prc(lab, "relay", home.carol, [
      "--host-cluster",
      "friends",
      "--users",
      `${id.alice}=alice,${id.bob}=bob,${id.dave}=dave`,
    ]);
    if (hosted.code !== 0) throw new Error(`--host-cluster: ${hosted.err}`);
    // each member joins from its own host by asking carol's node: that is all the configuration bob has
    const joins = await Promise.all(
      (["dave", "bob", "alice"] as const).map((n) =>
        runP2prc(lab, HOST[n], home[n], ["--join", `${LAB_ADDR.relay}:8088`]),
      ),
    );
    for (const j of joins) if (j.code !== 0) throw new Error(`--join: ${j.err}`);
    // alice is given no relay: finding herself relayed, she picks the nearest a member offers
    [node.dave, node.bob, node.alice] = await Promise.all([
      start("dave", { P2PRC_RELAY: "true" }),
      start("bob"),
      start("alice"),
    ]);
    console.log(`nat story: lab and four nodes up in ${Math.round(performance.now() - t0)} ms`);
  }, 120_000);

  afterAll(async () => {
    for (const p of procs) p.kill(9);
    await lab?.close();
  }, 60_000);

  /** A signed GET from `host` as `as` (its own key), TLS not pinned (readiness and counters only). */
  async function signedGet(host: LabHost, as: Name, url: string): Promise<{ status: number; body: string }> {
    const headers = signRequest(nodeIdentity(home[as]), "GET", url, "");
    return lab.fetch(host, url, { headers });
  }

  /** The relay alice's tunnel goes to (the first test finds it), and the other one. */
  let relay: "carol" | "dave" = "carol";
  const otherRelay = () => (relay === "carol" ? "dave" : "carol");
  const RELAY_PORT = { carol: `${LAB_ADDR.relay}:8089`, dave: `${LAB_ADDR.relay2}:8089` };

  /** The relay counters of `name` (asked by that node itself, on its host). */
  async function relayStats(name: "carol" | "dave" = relay): Promise<{
    tunnels: number;
    streamsOpened: number;
    refused: Record<string, number>;
  }> {
    const r = await signedGet(HOST[name], name, `${node[name].url}/v1/p2p/stats`);
    return (
      JSON.parse(r.body) as {
        relay: { tunnels: number; streamsOpened: number; refused: Record<string, number> };
      }
    ).relay;
  }

  type LsRow = { id: string; name: string; reach: string; relays?: string[] };
  async function bobLs(): Promise<LsRow[]> {
    const r = await bob(["--ls", "--json"]);
    if (r.code !== 0) throw new Error(`--ls: ${r.err}`);
    return JSON.parse(r.out) as LsRow[];
  }

  test("bob's --ls lists alice relayed through a relay she picked; --specs alice and --vi alice answer through it", async () => {
    // a direct dial from bob's host to alice's node fails: the router drops it
    expect((await lab.fetch("client", `${node.alice.url}/v1/health`, { timeoutS: 2 })).status).toBe(0);
    const rows = await waitFor(
      "bob sees alice relayed via carol or dave",
      async () => {
        const ls = await bobLs();
        const alice = ls.find((r) => r.name === "alice");
        const via = alice?.relays?.[0];
        return alice?.reach === "relay" && (via === id.carol || via === id.dave) && ls.length === 4
          ? ls
          : undefined;
      },
      45_000,
      500,
    );
    expect(Object.fromEntries(rows.map((r) => [r.name, r.reach]))).toEqual({
      alice: "relay",
      bob: "direct",
      carol: "direct",
      dave: "direct",
    });
    const plain = await bob(["--ls"]);
    relay = rows.find((r) => r.name === "alice")?.relays?.[0] === id.carol ? "carol" : "dave";
    console.log(`nat story: alice picked ${relay}'s relay`);
    expect(plain.out).toMatch(new RegExp(`alice\\s+\\S+\\s+relay via ${relay}\\s`));

    const specs = await bob(["--specs", "alice", "--json"]);
    expect(specs.err).toBe("");
    expect(specs.code).toBe(0);
    expect(JSON.parse(specs.out)).toMatchObject({ nodeId: id.alice });
    const images = await bob(["--vi", "alice", "--json"]);
    expect(images.err).toBe("");
    expect(images.code).toBe(0);
    expect(images.out).toContain(SSHD); // alice's own engine's images: the lab loaded the sshd image there
    expect((await relayStats()).streamsOpened).toBeGreaterThanOrEqual(2);
  }, 90_000);

  test("--touch alice --image <sshd> creates a container on alice's node (her engine)", async () => {
    const key = join(home.bob, "id_ed25519");
    expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key]).exitCode).toBe(0);
    const r = await touchAlice(SSHD, `${key}.pub`);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const started = JSON.parse(r.out) as { id: string; node: string; ssh?: { command: string } };
    expect(started.node).toBe(id.alice);
    expect(started.ssh?.command).toMatch(/^ssh /);
    sshCommand = started.ssh?.command ?? "";
    // it runs in home's engine, not the test engine the public nodes use
    const ps = await lab.run("home", ["docker", "-H", lab.homeDockerHost, "ps", "-q", "--no-trunc"]);
    expect(
      ps.out.split("\n").some((l) => l.startsWith(started.id) || started.id.startsWith(l.slice(0, 12))),
    ).toBe(true);
  }, 90_000);

  test("the printed ssh command works as printed from bob's host: a ProxyCommand of p2prc through alice's relay", async () => {
    if (!sshCommand) throw new Error("no ssh command from the --touch test");
    expect(sshCommand).toContain("ProxyCommand=");
    // as printed, plus no host-key prompt and no agent (what a first login on a fresh machine needs)
    const unattended = sshCommand.replace(
      /^ssh /,
      "ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=10 ",
    );
    const res = await lab.run("client", ["bash", "-c", `${unattended} echo ok-through-the-relay`], {
      timeoutMs: 30_000,
    });
    console.log(`nat story: printed ssh command: ${sshCommand} -> exit ${res.code} ${res.err.trim()}`);
    expect(res.out.trim()).toBe("ok-through-the-relay");
    // and no port is open on alice's router: her container's ssh port is not reachable from bob's host
    // at her address or at the router's public one (it is published in home only)
    const port = /-p (\d+)/.exec(sshCommand)?.[1];
    const canDial = async (from: LabHost, host: string) =>
      (await lab.run(from, ["bash", "-c", `timeout 3 bash -c '</dev/tcp/${host}/${port}'`])).code === 0;
    expect(await canDial("client", LAB_ADDR.home)).toBe(false);
    expect(await canDial("client", LAB_ADDR.router)).toBe(false);
    expect(await canDial("home", LAB_ADDR.home)).toBe(true);
  }, 60_000);

  test("what the printed command would need works: real ssh from bob's host through a relay forwarder to alice's container", async () => {
    const port = /-p (\d+)/.exec(sshCommand)?.[1] as string;
    const script = resolve(import.meta.dir, "lab/forward.ts");
    const fwd = Bun.spawn(
      lab.command("client", [process.execPath, script, RELAY_PORT[relay], id.alice, port, home.bob]),
      { stdout: "pipe", stderr: "pipe" },
    );
    procs.push(fwd);
    try {
      const reader = (fwd.stdout as ReadableStream<Uint8Array>).getReader();
      const local = Number(new TextDecoder().decode((await reader.read()).value).trim());
      expect(local).toBeGreaterThan(0);
      const key = join(home.bob, "id_ed25519");
      const opts = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes"];
      const argv = ["ssh", "-F", "/dev/null", "-i", key, ...opts.flatMap((o) => ["-o", o])];
      const res = await waitFor(
        "ssh through the relay",
        async () => {
          const r = await lab.run(
            "client",
            [...argv, "-p", String(local), "root@127.0.0.1", "echo ok-$(hostname)"],
            {
              timeoutMs: 15_000,
            },
          );
          return r.code === 0 ? r : undefined;
        },
        20_000,
        500,
      );
      expect(res.out.trim()).toMatch(/^ok-/);
    } finally {
      fwd.kill(9);
    }
  }, 60_000);

  test("batch --nodes alice,carol runs tasks on both and collects every result", async () => {
    const jobs = join(home.bob, "jobs");
    mkdirSync(jobs, { recursive: true });
    writeFileSync(
      join(jobs, "job.yaml"),
      [
        `image: ${BUSYBOX}`,
        `command: ["sh", "-c", "echo task-$P2PRC_TASK_INDEX > out.txt; echo done-$P2PRC_TASK_INDEX; sleep 1"]`,
        "tasks: 6",
        'outputs: ["out.txt"]',
        "",
      ].join("\n"),
    );
    const out = join(home.bob, "out");
    const r = await bob(
      ["batch", join(jobs, "job.yaml"), "--nodes", "alice,carol", "--out", out, "--json"],
      90_000,
    );
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.out) as {
      done: number;
      failed: number;
      results: { index: number; node: string }[];
    };
    expect(summary).toMatchObject({ done: 6, failed: 0 });
    for (let i = 0; i < 6; i++) {
      expect(readFileSync(join(out, String(i), "out.txt"), "utf8")).toBe(`task-${i}\n`);
      expect(readFileSync(join(out, String(i), "stdout"), "utf8")).toBe(`done-${i}\n`);
    }
    // both nodes took tasks (results name the node by its name)
    const used = new Set(summary.results.map((x) => x.node));
    if (used.size !== 2) console.log(`nat story: batch used ${[...used]}; its stderr:\n${r.err}`);
    expect(used).toEqual(new Set(["alice", "carol"]));
  }, 120_000);

  test("logs, exec and cp of a container on alice's node", async () => {
    const made = await touchAlice(BUSYBOX, "none", ["sh", "-c", "echo hello-from-home; sleep 600"]);
    expect(made.err).toBe("");
    expect(made.code).toBe(0);
    const c = (JSON.parse(made.out) as { id: string }).id;
    const logs = await waitFor(
      "logs",
      async () => {
        const l = await bob(["logs", "alice", c]);
        return l.code === 0 && l.out.includes("hello-from-home") ? l : undefined;
      },
      20_000,
      500,
    );
    expect(logs.out).toContain("hello-from-home");
    const exec = await bob(["exec", "alice", c, "--", "sh", "-c", "echo in-$(hostname); exit 3"]);
    expect(exec.code).toBe(3);
    expect(exec.out).toMatch(/^in-/);
    // exec -i: stdin streams to the command through the relay, its output and exit code come back
    const p2prc = [
      ...p2prcCommand(),
      "exec",
      "-i",
      "alice",
      c,
      "--",
      "sh",
      "-c",
      "read l; echo got:$l; exit 4",
    ];
    const piped = await lab.run(
      "client",
      ["sh", "-c", `printf 'through the relay\\n' | ${p2prc.map(shellQuote).join(" ")}`],
      {
        timeoutMs: 60_000,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home.bob, P2PRC: home.bob },
      },
    );
    expect(piped).toMatchObject({ code: 4, out: "got:through the relay\n", err: "" });
    const local = join(home.bob, "up.txt");
    writeFileSync(local, "copied through the relay\n");
    const up = await bob(["cp", local, `alice:${c}:/tmp/up.txt`]);
    expect(up.err).toBe("");
    expect(up.code).toBe(0);
    const down = join(home.bob, "down.txt");
    const back = await bob(["cp", `alice:${c}:/tmp/up.txt`, down]);
    expect(back.err).toBe("");
    expect(back.code).toBe(0);
    expect(readFileSync(down, "utf8")).toBe("copied through the relay\n");
  }, 90_000);

  test("a non-member can neither open a tunnel nor a stream at alice's relay; nothing is forwarded", async () => {
    const before = await relayStats();
    const script = resolve(import.meta.dir, "lab/stranger.ts");
    const r = await lab.run("client", [process.execPath, script, RELAY_PORT[relay], id.alice], {
      timeoutMs: 20_000,
    });
    expect(r.code).toBe(0);
    const probe = JSON.parse(r.out.trim().split("\n").at(-1) as string) as {
      tunnel: string | null;
      agent: { connects: number; failures: number };
      stream: string;
    };
    expect(probe.tunnel).toBeNull();
    expect(probe.agent.connects).toBe(0);
    expect(probe.agent.failures).toBeGreaterThan(0);
    expect(probe.stream).not.toBe("opened");
    const after = await relayStats();
    expect((after.refused.notMember ?? 0) - (before.refused.notMember ?? 0)).toBeGreaterThanOrEqual(2);
    expect(after.streamsOpened).toBe(before.streamsOpened);
    expect(after.tunnels).toBe(before.tunnels);
  }, 60_000);

  test("alice's relay killed while her tunnel is up: she is reachable again through the other within seconds", async () => {
    expect((await relayStats()).tunnels).toBeGreaterThanOrEqual(1);
    node[relay].proc.kill(9);
    await node[relay].proc.exited;
    const t0 = performance.now();
    const attempts: string[] = [];
    let slowest = 0;
    const specs = await waitFor(
      `--specs alice through ${otherRelay()}`,
      async () => {
        const a0 = performance.now();
        // a call made during the switch fails at once (alice's record names no relay for a moment), never
        // hangs on a dial into her NAT: 10 s would be a hang
        const s = await bob(["--specs", "alice", "--json"], 10_000);
        const ms = Math.round(performance.now() - a0);
        if (s.code !== 0) slowest = Math.max(slowest, ms);
        attempts.push(`${ms} ms: exit ${s.code} ${s.err.split("\n")[0]}`);
        return s.code === 0 ? s : undefined;
      },
      30_000,
      250,
    );
    const seconds = (performance.now() - t0) / 1000;
    console.log(`nat story: alice reachable again ${seconds.toFixed(1)} s after ${relay} was killed`);
    // what alice's relay agent said meanwhile (log level warn: losses, failed attempts, retries)
    const agentLog = node.alice.stderr
      .join("")
      .split("\n")
      .filter((l) => l.includes("relay"));
    console.log(`nat story: bob's --specs attempts:\n${attempts.join("\n")}`);
    console.log(`nat story: alice's relay agent:\n${agentLog.slice(-12).join("\n")}`);
    expect(JSON.parse(specs.out)).toMatchObject({ nodeId: id.alice });
    const ls = await bobLs();
    expect(ls.find((r) => r.name === "alice")?.relays?.[0]).toBe(id[otherRelay()]);
    expect(seconds).toBeLessThan(15);
    expect(slowest).toBeLessThan(8_000);
  }, 90_000);
});
