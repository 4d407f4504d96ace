// Daily use of one's containers from the command line (issue 18): logs, exec, cp, ps, lease, stop and
// start, what --touch takes, and the defects a new user hit with --rm, --group and --touch auto --gpu.
// Two TLS nodes (`p2prc --as-server`) on 127.0.0.1 share the engine; a client home knows both through
// --as and --us, a second client (another member) has its own home. The embedding API is checked too.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import { containers } from "../abstractions/index.ts";
import { pinnedTls, shellQuote } from "../core/index.ts";
import { freePort, p2prcCommand, removeTestNodes, runCommand, spawnNode, waitFor } from "./support.ts";

const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///tmp/p2prc-engine/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const root = mkdtempSync(join(tmpdir(), "p2prc-ctr-"));
const clientHome = join(root, "client");
const otherHome = join(root, "other");
/** HOME of every CLI run: holds a default SSH key, so `--ssh-key none` has something to leave out. */
const fakeHome = join(root, "home");
mkdirSync(join(fakeHome, ".ssh"), { recursive: true });
const procs: Subprocess[] = [];

interface Node {
  name: string;
  home: string;
  port: number;
  id: string;
}
let a: Node;
let b: Node;

async function startNode(name: string, bootstrap: string): Promise<Node> {
  const home = join(root, name);
  const crt = join(home, "identity", "tls.crt");
  const port = await freePort();
  const n = await spawnNode({
    home,
    procs,
    name,
    env: {
      HOME: fakeHome,
      DOCKER_HOST,
      P2PRC_TLS: "true",
      P2PRC_MACHINE_NAME: name,
      P2PRC_BOOTSTRAP: bootstrap,
      P2PRC_GOSSIP_INTERVAL_MS: "300",
      P2PRC_OPEN_NETWORK: "true",
      P2PRC_DEFAULT_CPUS: "0.5",
      P2PRC_MAX_TTL_SECONDS: "36000",
    },
    ready: async () => {
      if (!existsSync(crt)) return undefined;
      const res = await fetch(`https://127.0.0.1:${port}/v1/health`, {
        tls: pinnedTls(readFileSync(crt, "utf8")),
      });
      return res.ok ? ((await res.json()) as { nodeId: string }).nodeId : undefined;
    },
    port,
  });
  const health = (await (
    await fetch(`https://127.0.0.1:${n.port}/v1/health`, { tls: pinnedTls(readFileSync(crt, "utf8")) })
  ).json()) as { nodeId: string };
  return { name, home, port: n.port, id: health.nodeId };
}

function cliIn(home: string, args: string[]) {
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: fakeHome, DOCKER_HOST, P2PRC: home };
  return runCommand(
    [...p2prcCommand(), ...args],
    { cwd: root, env: { ...env, P2PRC_LOG_LEVEL: "warn" } },
    procs,
  );
}
const cli = (args: string[]) => cliIn(clientHome, args);

// biome-ignore lint/suspicious/noExplicitAny: JSON output checked field by field
async function cliJson(args: string[], home = clientHome): Promise<any> {
  // before `--`: what follows it is the container's command
  const dashes = args.indexOf("--");
  const withJson =
    dashes < 0 ? [...args, "--json"] : [...args.slice(0, dashes), "--json", ...args.slice(dashes)];
  const r = await cliIn(home, withJson);
  if (r.code !== 0) throw new Error(`p2prc ${args.join(" ")} exited ${r.code}: ${r.err}`);
  return JSON.parse(r.out);
}

const inspect = (id: string) => docker.getContainer(id).inspect();
const engineIds = async (nodeId: string) =>
  (await docker.listContainers({ all: true, filters: { label: [`p2prc.node=${nodeId}`] } })).map((c) => c.Id);

/** The one error line (hints aside) of a failed run. */
function oneError(r: { code: number; out: string; errLines: string[] }): string {
  expect(r.code).not.toBe(0);
  const errors = r.errLines.filter((l) => !l.startsWith("hint:"));
  expect(errors).toHaveLength(1);
  expect(errors[0]).toStartWith("p2prc: ");
  return errors[0] as string;
}

/** A long-running busybox container of the client's on node a, printing a numbered line every 0.2 s. */
let ticker = "";

beforeAll(async () => {
  a = await startNode("ct-node-a", "");
  b = await startNode("ct-node-b", "");
  Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", join(fakeHome, ".ssh", "id_ed25519")]);
  for (const home of [clientHome, otherHome]) {
    for (const n of [a, b]) {
      const added = await cliIn(home, ["--as", `127.0.0.1:${n.port}`]);
      if (added.code !== 0) throw new Error(`--as failed: ${added.err}`);
    }
    await waitFor(
      "the client's table knows both nodes",
      async () => {
        const rows = (await cliJson(["--us"], home)) as { id: string; port: number | null }[];
        const known = rows.filter((r) => r.port !== null).map((r) => r.id);
        return known.includes(a.id) && known.includes(b.id) ? true : undefined;
      },
      15_000,
      200,
    );
  }
  const started = await cliJson([
    "--touch",
    "ct-node-a",
    "--name",
    "ticker",
    "--ssh-key",
    "none",
    "--",
    "sh",
    "-c",
    "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.2; done",
  ]);
  ticker = started.id;
}, 60_000);

afterAll(async () => {
  await removeTestNodes(
    docker,
    procs,
    [a, b].map((n) => n?.id),
  );
  rmSync(root, { recursive: true, force: true });
}, 30_000);

describe("--touch takes what the API takes", () => {
  test("a command after --, --env, --publish, --ssh-key none (a default key exists): all on the container", async () => {
    const r = await cliJson([
      "--touch",
      "ct-node-a",
      "--env",
      "GREETING=hello world",
      "-e",
      "MODE=fast",
      "--publish",
      "8080,9090",
      "--ssh-key",
      "none",
      "--ttl",
      "600",
      "--",
      "sh",
      "-c",
      'echo "$GREETING $MODE"; exec sleep 1000',
    ]);
    // no ssh although ~/.ssh/id_ed25519.pub exists
    expect(r.ssh).toBeUndefined();
    expect(r.ports.map((p: { internal: number }) => p.internal).sort()).toEqual([8080, 9090]);
    const info = await inspect(r.id);
    expect(info.Config.Cmd).toEqual(["sh", "-c", 'echo "$GREETING $MODE"; exec sleep 1000']);
    expect(info.Config.Env).toEqual(expect.arrayContaining(["GREETING=hello world", "MODE=fast"]));
    const logs = await waitFor(
      "the command's output",
      async () => {
        const l = await cli(["logs", r.id]);
        return l.out.includes("hello world fast") ? l : undefined;
      },
      10_000,
      200,
    );
    expect(logs.code).toBe(0);
  }, 30_000);

  test("bad --env, --publish → one line, exit 2, nothing created", async () => {
    const before = (await engineIds(a.id)).sort();
    const env = await cli(["--touch", "ct-node-a", "--env", "NOEQUALS", "--ssh-key", "none"]);
    expect(oneError(env)).toContain("--env");
    expect(env.code).toBe(2);
    const pub = await cli(["--touch", "ct-node-a", "--publish", "80,http", "--ssh-key", "none"]);
    expect(oneError(pub)).toContain("--publish");
    expect(pub.code).toBe(2);
    const stray = await cli(["--ls", "--", "echo"]);
    expect(oneError(stray)).toContain("echo");
    expect((await engineIds(a.id)).sort()).toEqual(before);
  }, 30_000);

  test("defect 11: published ports bind to the node's serving address (serverHost 127.0.0.1)", async () => {
    const r = await cliJson(["--touch", "ct-node-a", "--publish", "80", "-p", "1", "--ssh-key", "none"]);
    const bindings = (await inspect(r.id)).HostConfig.PortBindings as Record<string, { HostIp: string }[]>;
    const ips = Object.values(bindings).flatMap((list) => list.map((x) => x.HostIp));
    expect(ips).toHaveLength(2);
    expect(new Set(ips)).toEqual(new Set(["127.0.0.1"]));
    await cli(["--rm", "ct-node-a", "--id", r.id]);
  }, 30_000);
});

describe("logs, exec, cp, ps", () => {
  test("logs <node> <id> --tail 2 prints the last two lines; the node may be left out for a tracked one", async () => {
    await waitFor(
      "some output",
      async () => ((await cli(["logs", ticker])).out.includes("line3") ? 1 : undefined),
      10_000,
      200,
    );
    const tail = await cli(["logs", "ct-node-a", ticker, "--tail", "2"]);
    expect(tail.code).toBe(0);
    const lines = tail.out.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^line\d+$/);
    // by the name given to --touch --name, without the node
    const byName = await cli(["logs", "ticker", "--tail", "1"]);
    expect(byName.out).toMatch(/^line\d+\n$/);
  }, 30_000);

  test("logs -f streams new lines until Ctrl-C, then exits 0", async () => {
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: fakeHome, DOCKER_HOST, P2PRC: clientHome };
    const proc = Bun.spawn([...p2prcCommand(), "logs", ticker, "-f", "--tail", "1"], {
      cwd: root,
      env,
      stdout: "pipe",
      stderr: "pipe",
    });
    procs.push(proc);
    const seen: string[] = [];
    const reader = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of proc.stdout) seen.push(decoder.decode(chunk));
    })();
    const first = await waitFor(
      "two followed lines",
      async () => {
        const lines = seen.join("").split("\n").filter(Boolean);
        return lines.length >= 3 ? lines : undefined;
      },
      10_000,
      100,
    );
    // numbered lines, in order: new ones arrived after the first
    const numbers = first.map((l) => Number(l.replace("line", "")));
    expect(numbers[2]).toBeGreaterThan(numbers[0] as number);
    proc.kill("SIGINT");
    expect(await proc.exited).toBe(0);
    await reader;
  }, 30_000);

  test("exec passes the exit code, stdout and stderr through; -e and -w reach the command", async () => {
    const r = await cli([
      "exec",
      "ct-node-a",
      ticker,
      "-e",
      "X=42",
      "-w",
      "/tmp",
      "--",
      "sh",
      "-c",
      'echo "out $X $(pwd)"; echo err >&2; exit 7',
    ]);
    expect(r.code).toBe(7);
    expect(r.out).toBe("out 42 /tmp\n");
    expect(r.err).toBe("err\n");
    const ok = await cli(["exec", "ticker", "--", "true"]);
    expect(ok.code).toBe(0);
    // the command's own flags are not p2prc's
    const flags = await cli(["exec", ticker, "--", "echo", "--debug", "-h"]);
    expect(flags.out).toBe("--debug -h\n");
    const noCmd = await cli(["exec", ticker]);
    expect(oneError(noCmd)).toContain("command");
    expect(noCmd.code).toBe(2);
    // -t with no terminal on stdin: one line, and the way out
    const tty = await cli(["exec", "-it", ticker, "--", "sh"]);
    expect(oneError(tty)).toBe("p2prc: exec: -t needs a terminal on stdin, and this input is not one");
    expect(tty.code).toBe(2);
  }, 30_000);

  /** Starts `p2prc <args>` with stdin a pipe the test writes to; stdout and stderr collected as they come. */
  function interactive(argv: string[]) {
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: fakeHome, DOCKER_HOST, P2PRC: clientHome };
    const proc = Bun.spawn(argv, { cwd: root, env, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    procs.push(proc);
    let out = "";
    const reading = (async () => {
      for await (const chunk of proc.stdout) out += new TextDecoder().decode(chunk);
    })();
    const err = new Response(proc.stderr).text();
    return {
      proc,
      output: () => out,
      until: (want: string) =>
        waitFor(`output "${want}"`, async () => out.includes(want) || undefined, 15_000, 50),
      done: async () => {
        const code = await proc.exited;
        await reading;
        return { code, out, err: await err };
      },
    };
  }

  test("exec -i: stdin reaches the command while it runs, output comes back as it is printed, the exit code passes", async () => {
    const script =
      "echo first-$((40+2)); echo to-stderr >&2; read line; echo got:$line; read more; exit $more";
    const s = interactive([...p2prcCommand(), "exec", "-i", ticker, "--", "sh", "-c", script]);
    // printed while stdin is still open and empty: output streams as it comes
    await s.until("first-42\n");
    s.proc.stdin.write("second line\n");
    s.proc.stdin.flush();
    // answered before the input ended: each line reaches the command as it is written
    await s.until("got:second line\n");
    s.proc.stdin.write("5\n");
    s.proc.stdin.flush();
    const r = await s.done(); // stdin is still open: the command's end ends the session
    expect(r.code).toBe(5);
    expect(r.out).toBe("first-42\ngot:second line\n");
    expect(r.err).toBe("to-stderr\n"); // stderr stays apart without a terminal
    // the end of input ends the command's input: cat returns
    const cat = interactive([...p2prcCommand(), "exec", "-i", ticker, "--", "cat"]);
    cat.proc.stdin.write("through cat\n");
    cat.proc.stdin.end();
    expect(await cat.done()).toMatchObject({ code: 0, out: "through cat\n" });
    // another member cannot open one on my container
    const other = await cliIn(otherHome, ["exec", "-i", `127.0.0.1:${a.port}`, ticker, "--", "true"]);
    expect(oneError(other)).toContain(ticker.slice(0, 12));
  }, 60_000);

  test("exec -it: a terminal in the container (through a real pty: script), keys as typed, the exit code passes", async () => {
    const command = [...p2prcCommand(), "exec", "-it", ticker, "--", "sh"].map(shellQuote).join(" ");
    const s = interactive(["script", "-qefc", command, "/dev/null"]);
    await s.until("# "); // the shell's prompt: typed keys go to it from here
    s.proc.stdin.write("[ -t 0 ] && echo is-a-$((1+1))-tty\r");
    s.proc.stdin.flush();
    await s.until("is-a-2-tty");
    s.proc.stdin.write("exit 3\r");
    s.proc.stdin.flush();
    const r = await s.done();
    expect(r.code).toBe(3);
  }, 60_000);

  test("cp copies a file and a directory in and back out", async () => {
    const local = join(root, "cp");
    mkdirSync(join(local, "dir", "sub"), { recursive: true });
    writeFileSync(join(local, "one.txt"), "first file\n");
    writeFileSync(join(local, "dir", "sub", "two.txt"), "second\n");
    const put = await cli(["cp", join(local, "one.txt"), `ct-node-a:${ticker}:/tmp/copied.txt`]);
    expect(put.code).toBe(0);
    expect((await cli(["exec", ticker, "--", "cat", "/tmp/copied.txt"])).out).toBe("first file\n");
    expect((await cli(["cp", join(local, "dir"), `ticker:/tmp/`])).code).toBe(0);
    expect((await cli(["exec", ticker, "--", "cat", "/tmp/dir/sub/two.txt"])).out).toBe("second\n");
    // out: to a new file name, and into an existing directory
    const back = await cli(["cp", `127.0.0.1:${a.port}:${ticker}:/tmp/copied.txt`, join(local, "back.txt")]);
    expect(back.code).toBe(0);
    expect(readFileSync(join(local, "back.txt"), "utf8")).toBe("first file\n");
    mkdirSync(join(local, "into"));
    expect((await cli(["cp", `ticker:/tmp/dir`, join(local, "into")])).code).toBe(0);
    expect(readFileSync(join(local, "into", "dir", "sub", "two.txt"), "utf8")).toBe("second\n");
    const missing = await cli(["cp", `ticker:/tmp/nothing-here`, join(local, "x")]);
    expect(oneError(missing)).toContain("nothing-here");
  }, 30_000);

  test("ps <node> lists my containers there; another member sees none of mine; the node's admin sees all", async () => {
    const mine = await cliJson(["ps", "ct-node-a"]);
    expect(mine.map((c: { id: string }) => c.id)).toContain(ticker);
    expect(mine.find((c: { id: string }) => c.id === ticker)).toMatchObject({
      name: "p2prc-ticker",
      state: "running",
    });
    const human = await cli(["ps"]);
    expect(human.out).toContain(ticker.slice(0, 12));
    expect(human.out).toContain(`127.0.0.1:${a.port}`);
    const other = await cliJson(["ps", "ct-node-a"], otherHome);
    expect(other.map((c: { id: string }) => c.id)).not.toContain(ticker);
    const admin = await cliJson(["ps", `127.0.0.1:${a.port}`], a.home);
    expect(admin.map((c: { id: string }) => c.id)).toContain(ticker);
  }, 30_000);
});

describe("leases: renew, stop, start", () => {
  test("lease --ttl renews; over the node's maxTtlSeconds → one line naming the field", async () => {
    const before = Date.now();
    const r = await cliJson(["lease", ticker, "--ttl", "7200"]);
    const ends = Date.parse(r.expiresAt);
    expect(ends).toBeGreaterThanOrEqual(before + 7200_000 - 2000);
    expect(ends).toBeLessThanOrEqual(Date.now() + 7200_000 + 2000);
    expect((await cliJson(["ps", "ct-node-a"])).find((c: { id: string }) => c.id === ticker).expiresAt).toBe(
      r.expiresAt,
    );
    const over = await cli(["lease", "ct-node-a", ticker, "--ttl", "40000"]);
    expect(oneError(over)).toContain("ttlSeconds");
    const none = await cli(["lease", ticker]);
    expect(oneError(none)).toContain("--ttl");
  }, 30_000);

  test("stop keeps the container (tracked, on the engine); start runs it again", async () => {
    const stopped = await cliJson(["stop", "ticker", "--time", "1"]);
    expect(stopped.running).toBe(false);
    expect((await inspect(ticker)).State.Running).toBe(false);
    const tracked = await cliJson(["--tc"]);
    expect(tracked.find((t: { id: string }) => t.id === ticker)).toMatchObject({ state: "exited" });
    const execStopped = await cli(["exec", ticker, "--", "true"]);
    expect(oneError(execStopped)).toContain("not running");
    const started = await cliJson(["start", "ct-node-a", ticker]);
    expect(started.running).toBe(true);
    expect((await inspect(ticker)).State.Running).toBe(true);
    expect((await cli(["exec", ticker, "--", "true"])).code).toBe(0);
  }, 30_000);

  test("the embedding API does the same: list, exec, logs, renew, stop, start", async () => {
    const options = { configDir: clientHome, env: { HOME: fakeHome, DOCKER_HOST } };
    const ref = { id: "ticker" };
    const r = await containers.exec(options, ref, ["sh", "-c", "echo api; exit 3"]);
    expect(r).toMatchObject({ exitCode: 3, stdout: "api\n" });
    const logs = await new Response(await containers.logs(options, ref, { tail: 1 })).text();
    expect(logs).toMatch(/^line\d+\n$/);
    const renewed = await containers.renew(options, { node: "ct-node-a", id: ticker }, 600);
    expect(Date.parse(renewed.expiresAt)).toBeLessThan(Date.now() + 601_000);
    expect((await containers.list(options, "ct-node-a")).map((c) => c.id)).toContain(ticker);
    expect((await containers.stop(options, ref, 0)).running).toBe(false);
    expect((await containers.start(options, ref)).running).toBe(true);
  }, 30_000);
});

describe("defects", () => {
  test("defect 1: --rm of a container it did not remove (a typo, another member's) fails; nothing removed", async () => {
    const typo = await cli(["--rm", "ct-node-a", "--id", "deadbeef"]);
    expect(oneError(typo)).toContain("deadbeef");
    expect(typo.out).toBe("");
    const theirs = await cliJson(["--touch", "ct-node-a", "--ssh-key", "none", "--ttl", "300"], otherHome);
    const r = await cli(["--rm", "ct-node-a", "--id", theirs.id]);
    expect(oneError(r)).toContain(theirs.id);
    expect(r.out).toBe("");
    expect((await inspect(theirs.id)).State.Running).toBe(true);
    // its owner removes it
    expect((await cliIn(otherHome, ["--rm", "ct-node-a", "--id", theirs.id])).code).toBe(0);
    expect(await engineIds(a.id)).not.toContain(theirs.id);
  }, 30_000);

  test("defect 2: the wrong-node refusal's hint names the node as host:port, and that command works", async () => {
    const c = await cliJson(["--touch", "ct-node-b", "--ssh-key", "none", "--ttl", "300"]);
    const r = await cli(["--rm", "ct-node-a", "--id", c.id]);
    oneError(r);
    expect(r.err).not.toContain("https://");
    expect(r.err).not.toContain("http://");
    const hint = r.errLines.find((l) => l.startsWith("hint:")) ?? "";
    expect(hint).toContain(`127.0.0.1:${b.port}`);
    expect((await inspect(c.id)).State.Running).toBe(true);
    const again = await cli(["--rm", `127.0.0.1:${b.port}`, "--id", c.id]);
    expect(again.code).toBe(0);
    expect(again.out.trim()).toBe(`removed ${c.id}`);
    expect(await engineIds(b.id)).not.toContain(c.id);
  }, 30_000);

  test("defect 6: --group G --id <name given to --touch --name> adds that container", async () => {
    const gid = (await cli(["--cgroup"])).out.trim();
    const g = await cliJson(["--group", gid, "--id", "ticker"]);
    expect(g.containers.map((c: { id: string }) => c.id)).toEqual([ticker]);
    expect((await cliJson(["--group", gid, "--id", "ticker", "--rmcgroup"])).containers).toEqual([]);
  }, 30_000);

  test("defect 7: --touch auto --gpu with no node offering GPUs says so; nothing created", async () => {
    const before = [...(await engineIds(a.id)), ...(await engineIds(b.id))].sort();
    const r = await cli(["--touch", "auto", "--gpu", "--ssh-key", "none"]);
    expect(oneError(r)).toContain("GPUs");
    expect(r.err).toContain("no known node");
    expect([...(await engineIds(a.id)), ...(await engineIds(b.id))].sort()).toEqual(before);
  }, 30_000);

  test("defect 10: a TLS node given as host:port (not in the table) is named https://, in the output and in --tc", async () => {
    const fresh = join(root, "fresh");
    const r = await cliIn(fresh, ["--touch", `127.0.0.1:${a.port}`, "--ssh-key", "none", "--ttl", "120"]);
    expect(r.code).toBe(0);
    const node = r.out.split("\n").find((l) => l.startsWith("node:")) ?? "";
    expect(node).toContain(`(https://127.0.0.1:${a.port})`);
    const tracked = await cliJson(["--tc"], fresh);
    expect(tracked).toHaveLength(1);
    expect(tracked[0]).toMatchObject({ nodeUrl: `https://127.0.0.1:${a.port}`, state: "running" });
    expect((await cliIn(fresh, ["--rm", `127.0.0.1:${a.port}`, "--id", tracked[0].id])).code).toBe(0);
  }, 30_000);
});
