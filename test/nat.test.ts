// The NAT lab (test/lab/nat.ts, Docs/Lab.md): a real NAT in network namespaces, a home node behind it
// with its own engine, public nodes in front. Checks the network itself (nobody dials into home; home
// dials out, seen at the router's address), then reachability (Docs/P2P.md): the home node finds itself
// `relay`, a public node `direct`, each by asking a member to dial it back.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { LAB_ADDR, type NatLab, natLabUnavailable, startNatLab } from "./lab/nat.ts";

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
    const r = await lab.run(
      from,
      ["bash", "-c", `timeout 3 bash -c 'cat < /dev/tcp/${host}/${port}'`],
      10_000,
    );
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
      30_000,
    );
    expect(r.err).toBe("");
    expect(r.out.trim()).toBe("ok");
  }, 60_000);
});
