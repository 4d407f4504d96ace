// The NAT lab (test/lab/nat.ts, Docs/Lab.md): a real NAT in network namespaces, a home node behind it
// with its own engine, public nodes in front. Checks the network itself (nobody dials into home; home
// dials out, seen at the router's address), then reachability (Docs/P2P.md): the home node finds itself
// `relay`, a public node `direct`, each by asking a member to dial it back.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { signRequest } from "../core/index.ts";
import type { ReachReport } from "../p2p/index.ts";
import {
  LAB_ADDR,
  type NatLab,
  natLabUnavailable,
  removeStaleLabs,
  runP2prc,
  spawnLabNode,
  startNatLab,
} from "./lab/nat.ts";
import { nodeIdentity, type SpawnedNode, waitFor } from "./support.ts";

const unavailable = natLabUnavailable();
if (unavailable) console.warn(`test/nat.test.ts skipped: ${unavailable}`);

describe.skipIf(unavailable !== undefined)("NAT lab", () => {
  let lab: NatLab;
  const procs: Subprocess[] = [];

  beforeAll(async () => {
    const t0 = performance.now();
    lab = await startNatLab();
    console.log(`nat lab up in ${Math.round(performance.now() - t0)} ms`);
  }, 60_000);

  afterAll(async () => {
    for (const p of procs) p.kill(9);
    await lab?.close();
  }, 60_000);

  /** A TCP listener in `host` on `port` that answers each connection with the peer address it saw. */
  function listen(host: "relay" | "home", port: number): Subprocess {
    const script = `Bun.listen({hostname:"0.0.0.0",port:${port},socket:{open(s){s.end(s.remoteAddress+"\\n")},data(){}}});`;
    const proc = Bun.spawn(lab.command(host, [process.execPath, "-e", script]), {
      stdout: "ignore",
      stderr: "ignore",
    });
    procs.push(proc);
    return proc;
  }

  /** Connects from `from` to host:port (3 s at most): what the listener said, or "" when no connection. */
  async function dial(from: "client" | "relay" | "home", host: string, port: number): Promise<string> {
    const r = await lab.run(from, ["bash", "-c", `timeout 3 bash -c 'cat < /dev/tcp/${host}/${port}'`]);
    return r.code === 0 ? r.out.trim() : "";
  }

  async function until(what: string, fn: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!(await fn())) {
      if (Date.now() > deadline) throw new Error(`${what}: not within 10 s`);
      await Bun.sleep(100);
    }
  }

  test("home dials out (seen at the router's address); nobody dials into home", async () => {
    listen("relay", 7001);
    listen("home", 7002);
    await until("relay listener", async () => (await dial("relay", LAB_ADDR.relay, 7001)) !== "");
    await until("home listener", async () => (await dial("home", LAB_ADDR.home, 7002)) !== "");
    // out: MASQUERADE, so the relay sees the router's public address
    expect(await dial("home", LAB_ADDR.relay, 7001)).toBe(LAB_ADDR.router);
    // in: the router drops new connections from wan to lan (a route exists: it is the NAT that stops it),
    // and forwards nothing from its public address
    expect(
      await Promise.all([
        dial("client", LAB_ADDR.home, 7002),
        dial("relay", LAB_ADDR.home, 7002),
        dial("client", LAB_ADDR.router, 7002),
      ]),
    ).toEqual(["", "", ""]);
  }, 60_000);

  test("home's engine runs containers in home's namespace", async () => {
    const r = await lab.run(
      "home",
      ["docker", "-H", lab.homeDockerHost, "run", "--rm", "p2prc-test/busybox", "sh", "-c", "echo ok"],
      { timeoutMs: 30_000 },
    );
    expect(r.err).toBe("");
    expect(r.out.trim()).toBe("ok");
  }, 60_000);

  test("a lab left by a killed run (its processes too) is removed by the next one, not a live one's", async () => {
    const script = join(lab.dir, "killed-run.ts");
    await Bun.write(
      script,
      `import { startNatLab } from ${JSON.stringify(join(import.meta.dir, "lab/nat.ts"))};
       const lab = await startNatLab({ engine: false });
       const sleeper = Bun.spawn(lab.command("home", ["sleep", "1000"]));
       console.log(lab.id, sleeper.pid);
       await Bun.sleep(1e6);`,
    );
    const child = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "inherit" });
    procs.push(child);
    const reader = (child.stdout as ReadableStream<Uint8Array>).getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    const [id, sleeper] = first.trim().split(" ") as [string, string];
    const namespaces = () =>
      Bun.spawnSync(["ip", "netns", "list"])
        .stdout.toString()
        .split("\n")
        .filter((l) => l.startsWith(`${id}-`));
    expect(namespaces().length).toBe(6);
    expect(removeStaleLabs()).not.toContain(id); // its owner still runs
    expect(namespaces().length).toBe(6);
    child.kill(9); // no exit handler runs
    await child.exited;
    expect(removeStaleLabs()).toEqual([id]);
    expect(namespaces()).toEqual([]);
    // killed: gone, or a zombie of whoever adopted it
    const stat = await Bun.file(`/proc/${sleeper}/stat`)
      .text()
      .catch(() => "");
    expect(stat).toMatch(/^$|^\d+ \(sleep\) Z/);
    // and this run's own lab is untouched
    expect((await lab.run("home", ["true"])).code).toBe(0);
  }, 60_000);

  describe("reachability", () => {
    const nodes: Record<"carol" | "bob" | "alice", { home: string; node?: SpawnedNode }> = {
      carol: { home: "" },
      bob: { home: "" },
      alice: { home: "" },
    };
    const hostOf = { carol: "relay", bob: "client", alice: "home" } as const;

    beforeAll(async () => {
      for (const name of ["carol", "bob", "alice"] as const) {
        nodes[name].home = join(lab.dir, name);
        mkdirSync(nodes[name].home, { recursive: true });
      }
      // keys first: each trusts the other two (their personal cluster), so each may ask the others
      const ids = Object.fromEntries(
        (["carol", "bob", "alice"] as const).map((n) => [n, nodeIdentity(nodes[n].home).nodeId]),
      );
      const start = (name: "carol" | "bob" | "alice") =>
        spawnLabNode(lab, hostOf[name], {
          home: nodes[name].home,
          procs,
          name,
          env: {
            P2PRC_MACHINE_NAME: name,
            P2PRC_TRUSTED: Object.values(ids).join(","),
            P2PRC_BOOTSTRAP: name === "carol" ? undefined : `${LAB_ADDR.relay}:8088`,
          },
        });
      nodes.carol.node = await start("carol");
      [nodes.bob.node, nodes.alice.node] = await Promise.all([start("bob"), start("alice")]);
    }, 90_000);

    /** GET /v1/p2p/reach of a node, signed by its own key, asked from inside its host. */
    async function reachOf(name: "carol" | "bob" | "alice"): Promise<ReachReport> {
      const url = `${nodes[name].node?.url}/v1/p2p/reach`;
      const headers = signRequest(nodeIdentity(nodes[name].home), "GET", url, "");
      const r = await lab.fetch(hostOf[name], url, { headers });
      if (r.status !== 200) throw new Error(`${name}: /v1/p2p/reach: ${r.status} ${r.body}`);
      return JSON.parse(r.body) as ReachReport;
    }

    /** `p2prc --ls --json` of bob's home, run on the client host. */
    async function bobLs(): Promise<{ name: string; reach: string; nat: boolean }[]> {
      const r = await runP2prc(lab, "client", nodes.bob.home, ["--ls", "--json"]);
      if (r.code !== 0) throw new Error(`--ls: ${r.err}`);
      return JSON.parse(r.out);
    }

    test("home finds itself relayed, the public nodes direct; --ls on bob shows it", async () => {
      const alice = await waitFor(
        "alice relayed",
        async () => {
          const r = await reachOf("alice");
          return r.reach === "relay" ? r : undefined;
        },
        30_000,
        500,
      );
      expect(alice.mode).toBe("auto");
      expect(alice.nat).toBe(true);
      expect(alice.checkedAt).toBeNumber();
      // the member that tried could not dial alice's own address
      expect(alice.answers.length).toBeGreaterThan(0);
      for (const a of alice.answers) {
        expect(a.reachable).toBe(false);
        expect(a.error).toContain(`${LAB_ADDR.home}:8088`);
      }
      for (const name of ["carol", "bob"] as const) {
        const r = await waitFor(
          `${name} checked`,
          async () => {
            const x = await reachOf(name);
            return x.checkedAt ? x : undefined;
          },
          30_000,
          500,
        );
        expect(r.reach).toBe("direct");
        expect(r.answers.some((a) => a.reachable)).toBe(true);
      }
      // bob's table (from gossip: alice's record reached bob, signed by alice) marks alice relayed
      const rows = await waitFor(
        "bob's --ls shows alice relayed",
        async () => {
          const ls = await bobLs();
          return ls.find((r) => r.name === "alice")?.reach === "relay" && ls.length === 3 ? ls : undefined;
        },
        20_000,
        500,
      );
      expect(Object.fromEntries(rows.map((r) => [r.name, r.reach]))).toEqual({
        alice: "relay",
        bob: "direct",
        carol: "direct",
      });
      expect(rows.find((r) => r.name === "alice")?.nat).toBe(true);
      const plain = await runP2prc(lab, "client", nodes.bob.home, ["--ls"]);
      expect(plain.out.split("\n")[0]).toMatch(/^ID\s+NAME\s+ADDRESS\s+REACH\s+LATENCY/);
      expect(plain.out).toMatch(new RegExp(`alice\\s+${LAB_ADDR.home}:8088\\s+relay\\s`));
      expect(plain.out).toMatch(new RegExp(`carol\\s+${LAB_ADDR.relay}:8088\\s+direct\\s`));
    }, 90_000);

    test("alice's node answers in home, and a direct dial to it from the public side fails", async () => {
      const url = nodes.alice.node?.url as string;
      expect((await lab.fetch("home", `${url}/v1/health`)).status).toBe(200);
      const [fromClient, fromRelay] = await Promise.all([
        lab.fetch("client", `${url}/v1/health`, { timeoutS: 3 }),
        lab.fetch("relay", `${url}/v1/health`, { timeoutS: 3 }),
      ]);
      expect([fromClient.status, fromRelay.status]).toEqual([0, 0]);
    }, 30_000);

    test("a dial-back from a non-member is refused (403), and nothing is dialed", async () => {
      const url = `${nodes.carol.node?.url}/v1/p2p/dialback`;
      const { generateIdentity } = await import("../core/index.ts");
      const stranger = generateIdentity();
      const body = JSON.stringify({ record: {} });
      const headers = { "content-type": "application/json", ...signRequest(stranger, "POST", url, body) };
      const r = await lab.fetch("client", url, { method: "POST", headers, body });
      expect(r.status).toBe(403);
    }, 30_000);
  });
});
