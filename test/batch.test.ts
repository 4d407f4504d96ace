// Batch jobs across real processes: three `p2prc --as-server` nodes on 127.0.0.1 sharing the engine,
// and a separate client home that knows them through `--as` and `--us`. The CLI runs as a child
// process, so it can be killed hard; its state.db is read to see what it had done at that moment.
// Order matters: the last test kills node 1.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import { PNG } from "pngjs";
import { mandelbrotLocal, type TaskResult, toPng } from "../client/index.ts";
import type { Identity } from "../core/index.ts";
import { nodeIdentity, removeNodeNetworks, signedFetch, spawnNode, waitFor } from "./support.ts";

const ROOT = resolve(import.meta.dir, "..");
const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///tmp/p2prc-engine/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const BUSYBOX = "p2prc-test/busybox";
const root = mkdtempSync(join(tmpdir(), "p2prc-batch-"));
const clientHome = join(root, "client");
const jobs = join(root, "jobs");
mkdirSync(jobs, { recursive: true });
const procs: Subprocess[] = [];
const nodeIds = new Set<string>();

interface Node {
  name: string;
  port: number;
  url: string;
  id: string;
  /** The node's own key: admin on it. */
  key: Identity;
  proc: Subprocess;
  stderr: string[];
}

async function startNode(
  name: string,
  bootstrap: string,
  extraEnv: Record<string, string> = {},
): Promise<Node> {
  const { proc, port, url, nodeId, stderr } = await spawnNode({
    home: join(root, name),
    procs,
    name,
    command: [process.execPath, join(ROOT, "cli/main.ts")],
    env: {
      HOME: root,
      DOCKER_HOST,
      P2PRC_MACHINE_NAME: name,
      P2PRC_BOOTSTRAP: bootstrap,
      P2PRC_GOSSIP_INTERVAL_MS: "300",
      P2PRC_DEFAULT_CPUS: "0.25",
      // the test network's nodes (and the client) are members of each other
      P2PRC_OPEN_NETWORK: "true",
      ...extraEnv,
    },
    timeoutMs: 15_000,
  });
  nodeIds.add(nodeId);
  const key = nodeIdentity(join(root, name));
  if (key.nodeId !== nodeId) throw new Error(`${name}: its key is not the one it serves with`);
  return { name, port, url, id: nodeId, key, proc, stderr };
}

const cliEnv = () => ({
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: root,
  DOCKER_HOST,
  P2PRC: clientHome,
  P2PRC_LOG_LEVEL: "warn",
  P2PRC_TLS: "false",
});

/** Starts the CLI against the client home; stderr is collected as it comes. */
function spawnCli(args: string[]) {
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli/main.ts"), ...args], {
    cwd: root,
    env: cliEnv(),
    stdout: "pipe",
    stderr: "pipe",
  });
  procs.push(proc);
  const err = { text: "" };
  const errDone = (async () => {
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>)
      err.text += new TextDecoder().decode(chunk);
  })();
  const out = new Response(proc.stdout).text();
  const done = (async () => {
    const [o, code] = await Promise.all([out, proc.exited, errDone]);
    return { code: proc.exitCode ?? -1, out: o, err: err.text, signal: proc.signalCode, exited: code };
  })();
  return { proc, err, done };
}

async function cli(args: string[]) {
  return spawnCli(args).done;
}

/** Task indexes the CLI reported as done (lines mode: "task N done (exit 0) on NODE [k/n]"). */
function doneLines(stderr: string): Map<number, string> {
  const m = new Map<number, string>();
  for (const [, i, node] of stderr.matchAll(/^task (\d+) done \(exit 0\) on (\S+) /gm))
    m.set(Number(i), node as string);
  return m;
}

interface DbTask {
  idx: number;
  state: string;
  node: string | null;
  attempts: number;
}

/** The client's own rows for the batch writing to `outDir`, read straight from its state.db. */
function dbTasks(outDir: string): DbTask[] {
  const db = new Database(join(clientHome, "state.db"), { readonly: true });
  try {
    return db
      .query<DbTask, [string]>(
        `SELECT t.idx AS idx, t.state AS state, t.node AS node, t.attempts AS attempts
           FROM batch_tasks t JOIN batches b ON b.id = t.batch_id WHERE b.out_dir = ? ORDER BY t.idx`,
      )
      .all(resolve(outDir));
  } finally {
    db.close();
  }
}

/** One row of results.json. */
type Row = TaskResult;

const readResults = (outDir: string) =>
  JSON.parse(readFileSync(join(outDir, "results.json"), "utf8")) as Row[];
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Every task exactly once, all done with exit 0. */
function expectAllDone(rows: Row[], n: number) {
  expect(rows).toHaveLength(n);
  expect(rows.map((r) => r.index).sort((x, y) => x - y)).toEqual(range(n));
  for (const r of rows) {
    expect({ index: r.index, state: r.state, exitCode: r.exitCode }).toEqual({
      index: r.index,
      state: "done",
      exitCode: 0,
    });
    expect(r.attempts).toBeGreaterThanOrEqual(1);
    expect(typeof r.durationMs).toBe("number");
  }
}

/** Removes every container the nodes list (those left behind by a killed client), as each node's admin. */
async function clearNodes(list: Node[]) {
  for (const n of list) {
    const res = await signedFetch(n.key, `${n.url}/v1/containers`);
    const { containers } = (await res.json()) as { containers: { id: string }[] };
    await Promise.all(
      containers.map((c) => signedFetch(n.key, `${n.url}/v1/containers/${c.id}`, { method: "DELETE" })),
    );
  }
}

const nodes: Node[] = [];
const NAMES = ["bt-node-0", "bt-node-1", "bt-node-2"];

beforeAll(async () => {
  const first = await startNode(NAMES[0] as string, "");
  nodes.push(first);
  nodes.push(...(await Promise.all(NAMES.slice(1).map((n) => startNode(n, `127.0.0.1:${first.port}`)))));
  await waitFor(
    "node 0 knows all three",
    async () => {
      const t = (await (await signedFetch(first.key, `${first.url}/v1/p2p/table`)).json()) as {
        nodes: { id: string }[];
      };
      return nodes.every((n) => t.nodes.some((v) => v.id === n.id)) ? true : undefined;
    },
    10_000,
  );
  const added = await cli(["--as", `127.0.0.1:${first.port}`]);
  if (added.code !== 0) throw new Error(`--as failed: ${added.err}`);
  await waitFor(
    "the client knows all three nodes with addresses",
    async () => {
      const r = await cli(["--us", "--json"]);
      const rows = JSON.parse(r.out) as { id: string; port: number | null; latencyMs: number | null }[];
      const known = rows.filter((x) => x.port !== null && x.latencyMs !== null).map((x) => x.id);
      return nodes.every((n) => known.includes(n.id)) ? true : undefined;
    },
    10_000,
    200,
  );
}, 40_000);

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill(9);
  await Promise.all(procs.map((p) => p.exited));
  for (const id of nodeIds) {
    const list = await docker.listContainers({ all: true, filters: { label: [`p2prc.node=${id}`] } });
    await Promise.all(
      list.map((c) =>
        docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => {}),
      ),
    );
  }
  await removeNodeNetworks(docker, nodeIds);
  rmSync(root, { recursive: true, force: true });
}, 30_000);

describe("batch on three nodes", () => {
  test("30 tasks with an input file: every output, stdout and stderr back, results.json complete", async () => {
    const secret = `secret-${Math.random().toString(36).slice(2)}`;
    writeFileSync(join(jobs, "in.txt"), `${secret}\n`);
    const job = {
      image: BUSYBOX,
      command: [
        "sh",
        "-c",
        'read x < in.txt; echo "$P2PRC_TASK_INDEX" > out.txt; echo "$x-$P2PRC_TASK_INDEX-$P2PRC_TASK_COUNT"; echo "err-$P2PRC_TASK_INDEX" >&2; sleep 0.3',
      ],
      tasks: 30,
      inputs: ["in.txt"],
      outputs: ["out.txt"],
    };
    writeFileSync(join(jobs, "basic.json"), JSON.stringify(job));
    const out = join(root, "out-basic");
    const r = await cli(["batch", join(jobs, "basic.json"), "--out", out, "--json"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.out);
    expect(summary).toMatchObject({ resumed: false, done: 30, failed: 0 });
    const rows = readResults(out);
    expectAllDone(rows, 30);
    expect(summary.results).toEqual(rows);
    for (const i of range(30)) {
      expect(readFileSync(join(out, String(i), "out.txt"), "utf8")).toBe(`${i}\n`);
      expect(readFileSync(join(out, String(i), "stdout"), "utf8")).toBe(`${secret}-${i}-30\n`);
      expect(readFileSync(join(out, String(i), "stderr"), "utf8")).toBe(`err-${i}\n`);
    }
    // no failures, so no retries; and every node took part
    expect(rows.every((x) => x.attempts === 1)).toBe(true);
    expect(new Set(rows.map((x) => x.node))).toEqual(new Set(NAMES));
    // the job's warm containers are gone once it ends (listed by each node's admin, who sees them all):
    // the nodes remove them right after answering the batch's last requests (DELETE ?background=1)
    for (const n of nodes) {
      const list = async () =>
        ((await (await signedFetch(n.key, `${n.url}/v1/containers`)).json()) as { containers: unknown[] })
          .containers;
      await waitFor(
        "the warm containers removed",
        async () => ((await list()).length ? undefined : true),
        30_000,
      );
      expect(await list()).toEqual([]);
    }
  }, 60_000);

  test("the client killed mid-batch: the same command resumes, finished tasks are not redone", async () => {
    const yaml = [
      `image: ${BUSYBOX}`,
      "command:",
      "  - sh",
      "  - -c",
      '  - cat /proc/sys/kernel/random/uuid > out.txt; echo "$P2PRC_TASK_INDEX $WORD" >> out.txt; sleep 1',
      "outputs: [out.txt]",
      "tasks:",
      ...range(24).map((i) => `  - { WORD: w${i} }`),
      "",
    ].join("\n");
    const jobPath = join(jobs, "resume.yaml");
    writeFileSync(jobPath, yaml);
    const out = join(root, "out-resume");
    const args = ["batch", jobPath, "--out", out];

    const first = spawnCli(args);
    await waitFor(
      "a few tasks done",
      async () => {
        if (first.proc.exitCode !== null) throw new Error(`batch ended early: ${first.err.text}`);
        return doneLines(first.err.text).size >= 4 ? true : undefined;
      },
      30_000,
      20,
    );
    first.proc.kill(9);
    const killed = await first.done;
    expect(killed.signal).toBe("SIGKILL");

    const snapshot = dbTasks(out);
    expect(snapshot).toHaveLength(24);
    const done = snapshot.filter((t) => t.state === "done");
    const wasRunning = snapshot.filter((t) => t.state === "running").map((t) => t.idx);
    // the CLI reports a task done only after saving it
    for (const i of doneLines(killed.err).keys()) expect(done.map((t) => t.idx)).toContain(i);
    expect(done.length).toBeGreaterThanOrEqual(4);
    expect(done.length).toBeLessThan(24);
    expect(wasRunning.length).toBeGreaterThan(0);
    expect(existsSync(join(out, "results.json"))).toBe(false);
    const before = new Map(
      done.map((t) => {
        const f = join(out, String(t.idx), "out.txt");
        return [
          t.idx,
          { text: readFileSync(f, "utf8"), mtimeMs: statSync(f).mtimeMs, node: t.node, attempts: t.attempts },
        ];
      }),
    );

    const second = await cli(args);
    expect(second.code).toBe(0);
    expect(second.out).toContain("(resumed)");
    expect(second.out).toContain("24 done, 0 failed");
    const rows = readResults(out);
    expectAllDone(rows, 24);
    // the second run ran exactly the tasks the first had not finished
    const rerun = [...doneLines(second.err).keys()].sort((x, y) => x - y);
    expect(rerun).toEqual(range(24).filter((i) => !before.has(i)));
    for (const [i, b] of before) {
      const f = join(out, String(i), "out.txt");
      // a task run again would have written a new random line
      expect(readFileSync(f, "utf8")).toBe(b.text);
      expect(statSync(f).mtimeMs).toBe(b.mtimeMs);
      const row = rows.find((x) => x.index === i) as Row;
      expect({ node: row.node, attempts: row.attempts }).toEqual({ node: b.node, attempts: b.attempts });
    }
    for (const i of wasRunning)
      expect((rows.find((x) => x.index === i) as Row).attempts).toBeGreaterThanOrEqual(2);
    for (const i of range(24)) {
      const lines = readFileSync(join(out, String(i), "out.txt"), "utf8")
        .trimEnd()
        .split("\n");
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(/^[0-9a-f-]{36}$/);
      expect(lines[1]).toBe(`${i} w${i}`);
    }

    // a third run of the same command has nothing left to do
    const third = await cli([...args, "--json"]);
    expect(third.code).toBe(0);
    const summary = JSON.parse(third.out);
    expect(summary).toMatchObject({ resumed: true, done: 24, failed: 0 });
    expect(summary.results).toEqual(rows);
    await clearNodes(nodes); // the killed client's warm containers
  }, 90_000);

  test("demo mandelbrot: the assembled PNG equals the local computation pixel for pixel", async () => {
    const png = join(root, "m.png");
    const r = await cli([
      "demo",
      "mandelbrot",
      "--tiles",
      "6",
      "--size",
      "120x80",
      "--image",
      BUSYBOX,
      "--out",
      png,
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("120x80");
    const opts = { width: 120, height: 80, tiles: 6, maxIter: 200, image: BUSYBOX };
    const got = PNG.sync.read(readFileSync(png));
    const want = PNG.sync.read(Buffer.from(toPng(mandelbrotLocal(opts), opts)));
    expect([got.width, got.height]).toEqual([120, 80]);
    expect(got.data.length).toBe(want.data.length);
    let differing = 0;
    for (let p = 0; p < want.data.length; p++) if (got.data[p] !== want.data[p]) differing++;
    expect(differing).toBe(0);
    // the picture is not trivially uniform
    expect(new Set(got.data.filter((_, p) => p % 4 === 0)).size).toBeGreaterThan(10);
    const tiles = readResults(`${png}.tiles`);
    expectAllDone(tiles, 6);
  }, 60_000);

  test("demo mandelbrot with more tiles than rows: a correct image, or a usage error before any work", async () => {
    const png = join(root, "thin.png");
    const r = await cli([
      "demo",
      "mandelbrot",
      "--tiles",
      "5",
      "--size",
      "30x3",
      "--image",
      BUSYBOX,
      "--out",
      png,
    ]);
    if (r.code === 0) {
      const opts = { width: 30, height: 3, tiles: 5, maxIter: 200, image: BUSYBOX };
      const got = PNG.sync.read(readFileSync(png));
      const want = PNG.sync.read(Buffer.from(toPng(mandelbrotLocal(opts), opts)));
      expect(Buffer.compare(got.data, want.data)).toBe(0);
    } else {
      // refused up front: exit 2 (usage), nothing sent to the nodes
      expect({
        code: r.code,
        err: r.err.split("\n").find((l) => l.startsWith("p2prc:")),
        ran: existsSync(`${png}.tiles`),
      }).toEqual({
        code: 2,
        err: expect.stringContaining("tiles"),
        ran: false,
      });
    }
  }, 30_000);

  test("on a terminal: one redrawn progress bar, ended by a single newline, then the summary", async () => {
    const { runCli } = await import("../cli/run.ts");
    writeFileSync(
      join(jobs, "tty.json"),
      JSON.stringify({ image: BUSYBOX, command: ["sh", "-c", "sleep 0.2"], tasks: 3, maxPerNode: 1 }),
    );
    const stderr = process.stderr as unknown as { isTTY: boolean; write: (s: unknown) => boolean };
    const saved = { isTTY: stderr.isTTY, write: stderr.write };
    const written: string[] = [];
    const out: string[] = [];
    let code = -1;
    stderr.isTTY = true;
    stderr.write = (s) => written.push(String(s)) > 0;
    try {
      code = await runCli(["batch", join(jobs, "tty.json"), "--out", join(root, "out-tty")], {
        io: { out: (t) => out.push(t), err: (t) => written.push(`${t}\n`) },
        env: { ...cliEnv() },
      });
    } finally {
      stderr.isTTY = saved.isTTY;
      stderr.write = saved.write;
    }
    expect(code).toBe(0);
    expect(out.join("")).toContain("3 done, 0 failed");
    const text = written.join("");
    // no per-task lines on a terminal
    expect(text).not.toMatch(/^task \d+ /m);
    const frames = text.split("\r\x1b[2K").filter(Boolean);
    expect(frames.length).toBeGreaterThan(1);
    expect(frames.at(-1)).toMatch(/^\[#{24}\] 3\/3 done, 0 running, 0 failed \| .* \| ETA \S+\n$/);
    // the bar is ended once: no blank line between it and the summary
    expect(text.endsWith("\n")).toBe(true);
    expect(text.endsWith("\n\n")).toBe(false);
  }, 30_000);

  test("a task that fails by its own exit code is reported, not retried; retryOnFailure retries it", async () => {
    const command = [
      "sh",
      "-c",
      'echo "$P2PRC_TASK_INDEX" > out.txt; [ "$P2PRC_TASK_INDEX" != 2 ] || exit 3',
    ];
    writeFileSync(
      join(jobs, "fails.json"),
      JSON.stringify({ image: BUSYBOX, command, tasks: 4, outputs: ["out.txt"] }),
    );
    const out = join(root, "out-fails");
    const r = await cli(["batch", join(jobs, "fails.json"), "--out", out, "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out)).toMatchObject({ done: 3, failed: 1 });
    const rows = readResults(out);
    expect(rows.map((x) => x.index)).toEqual([0, 1, 2, 3]);
    expect(rows[2]).toMatchObject({ index: 2, state: "failed", exitCode: 3, attempts: 1 });
    for (const i of [0, 1, 3]) expect(rows[i]).toMatchObject({ state: "done", exitCode: 0, attempts: 1 });

    writeFileSync(
      join(jobs, "fails-retried.json"),
      JSON.stringify({
        image: BUSYBOX,
        command,
        tasks: 4,
        outputs: ["out.txt"],
        retryOnFailure: true,
        retries: 1,
      }),
    );
    const out2 = join(root, "out-fails-retried");
    const r2 = await cli(["batch", join(jobs, "fails-retried.json"), "--out", out2, "--json"]);
    expect(r2.code).toBe(1);
    expect(readResults(out2)[2]).toMatchObject({ index: 2, state: "failed", exitCode: 3, attempts: 2 });
  }, 60_000);

  test("outputs: a directory comes back whole; a missing output is named in the row", async () => {
    writeFileSync(
      join(jobs, "dirs.json"),
      JSON.stringify({
        image: BUSYBOX,
        command: [
          "sh",
          "-c",
          'mkdir -p res/sub; echo "a$P2PRC_TASK_INDEX" > res/a.txt; echo b > res/sub/b.txt',
        ],
        tasks: 2,
        outputs: ["res/", "nope.txt"],
      }),
    );
    const out = join(root, "out-dirs");
    await cli(["batch", join(jobs, "dirs.json"), "--out", out]);
    const rows = readResults(out);
    for (const i of [0, 1]) {
      expect(readFileSync(join(out, String(i), "res", "a.txt"), "utf8")).toBe(`a${i}\n`);
      expect(readFileSync(join(out, String(i), "res", "sub", "b.txt"), "utf8")).toBe("b\n");
      expect(rows[i]?.error ?? "").toContain("nope.txt");
    }
  }, 30_000);

  test("--nodes naming an unknown node → non-zero exit, one error line, no results", async () => {
    const out = join(root, "out-unknown-node");
    const r = await cli([
      "batch",
      join(jobs, "fails.json"),
      "--out",
      out,
      "--nodes",
      "bt-node-0,no-such-node",
    ]);
    expect(r.code).not.toBe(0);
    const errors = r.err.split("\n").filter((l) => l && !l.startsWith("hint:"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain("no-such-node");
    expect(existsSync(join(out, "results.json"))).toBe(false);
  }, 20_000);

  test("a node that refuses the job's image does not make tasks fail while another node can run them", async () => {
    // a real node whose operator allows only another image; named by host:port, as --nodes allows
    const refuser = await startNode("bt-refuser", "", { P2PRC_ALLOWED_IMAGES: "p2prc-test/debian-sshd" });
    try {
      // it answers a create for the job's image with a refusal (this also warms it up)
      // asked as the client (its home's key), as the batch will
      const refused = await signedFetch(nodeIdentity(clientHome), `${refuser.url}/v1/containers`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ image: BUSYBOX }),
      });
      expect(refused.status).toBeGreaterThanOrEqual(400);
      expect(refused.status).toBeLessThan(500);
      // refused for its image, not for who asked
      expect(await refused.text()).toContain("not offered");
      writeFileSync(
        join(jobs, "refused.json"),
        JSON.stringify({
          image: BUSYBOX,
          command: ["sh", "-c", 'echo "$P2PRC_TASK_INDEX" > out.txt; sleep 1'],
          tasks: 8,
          outputs: ["out.txt"],
        }),
      );
      const out = join(root, "out-refused");
      const r = await cli([
        "batch",
        join(jobs, "refused.json"),
        "--out",
        out,
        "--nodes",
        `bt-node-0,127.0.0.1:${refuser.port}`,
      ]);
      const rows = readResults(out);
      const failed = rows.filter((x) => x.state !== "done").map((x) => `${x.index}: ${x.error ?? ""}`);
      expect(failed).toEqual([]);
      expect(r.code).toBe(0);
      expectAllDone(rows, 8);
      expect(new Set(rows.map((x) => x.node))).toEqual(new Set(["bt-node-0"]));
    } finally {
      refuser.proc.kill(9);
      await refuser.proc.exited;
    }
  }, 60_000);

  test("200 tasks sharing a 20 MB input: it crosses to each node once (the nodes' counters say so)", async () => {
    const SIZE = 20 * 1024 * 1024;
    const TASKS = 200;
    const stats = (n: Node) =>
      signedFetch(n.key, `${n.url}/v1/inputs/stats`).then(
        (r) => r.json() as Promise<{ bytesReceived: number; bytesServed: number }>,
      );
    const before = await Promise.all(nodes.map(stats));
    const dir = join(jobs, "shared-input");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "input.bin"), randomBytes(SIZE));
    const jobPath = join(dir, "job.json");
    writeFileSync(
      jobPath,
      JSON.stringify({
        image: BUSYBOX,
        command: ["wc", "-c", "input.bin"],
        tasks: TASKS,
        inputs: ["input.bin"],
      }),
    );
    const out = join(root, "out-shared");
    const r = await cli(["batch", jobPath, "--out", out, "--json"]);
    expect(r.code).toBe(0);
    const rows = readResults(out);
    expectAllDone(rows, TASKS);
    for (const row of rows)
      expect(readFileSync(join(out, String(row.index), "stdout"), "utf8").trim()).toBe(`${SIZE} input.bin`);
    const after = await Promise.all(nodes.map(stats));
    const used = nodes.filter((n) => rows.some((row) => row.node === n.name));
    expect(used.length).toBeGreaterThan(0);
    nodes.forEach((n, i) => {
      const ran = rows.filter((row) => row.node === n.name).length;
      const b = before[i] as { bytesReceived: number; bytesServed: number };
      const a = after[i] as { bytesReceived: number; bytesServed: number };
      // once per node that ran a task, whatever the number of its tasks; served to every task there
      expect({ node: n.name, received: a.bytesReceived - b.bytesReceived }).toEqual({
        node: n.name,
        received: ran > 0 ? SIZE : 0,
      });
      expect(a.bytesServed - b.bytesServed).toBe(ran * SIZE);
    });
    const summary = JSON.parse(r.out) as { inputs: { sent: number; perTask: number; saved: number } };
    const attempts = rows.reduce((k, row) => k + row.attempts, 0);
    expect(summary.inputs).toEqual({
      sent: used.length * SIZE,
      perTask: attempts * SIZE,
      saved: (attempts - used.length) * SIZE,
    });
  }, 180_000);

  test("a node killed -9 mid-batch: its tasks run again elsewhere; all 30 done exactly once", async () => {
    const victim = nodes[1] as Node;
    writeFileSync(
      join(jobs, "kill.json"),
      JSON.stringify({
        image: BUSYBOX,
        // Every run leaves a trace: a line (container, task, attempt directory, pid) appended to a log in
        // its container, copied back with the outputs. A container's log holds every run it served, so
        // the union of the copies shows each run on a node that survived, including a second run of a
        // task that should have run once.
        command: [
          "sh",
          "-c",
          'echo "$P2PRC_TASK_INDEX" > out.txt; echo "$(hostname) $P2PRC_TASK_INDEX $PWD $$" >> /p2prc-task/runs.log; cp /p2prc-task/runs.log runs.log; sleep 1',
        ],
        tasks: 30,
        outputs: ["out.txt", "runs.log"],
      }),
    );
    const out = join(root, "out-kill");
    const run = spawnCli(["batch", join(jobs, "kill.json"), "--out", out]);
    await waitFor(
      "first results",
      async () => {
        if (run.proc.exitCode !== null) throw new Error(`batch ended early: ${run.err.text}`);
        return doneLines(run.err.text).size >= 3 ? true : undefined;
      },
      30_000,
      20,
    );
    const onVictim = dbTasks(out)
      .filter((t) => t.state === "running" && t.node === victim.name)
      .map((t) => t.idx);
    const victimContainers = new Set(
      (await docker.listContainers({ all: true, filters: { label: [`p2prc.node=${victim.id}`] } })).map((c) =>
        c.Id.slice(0, 12),
      ),
    );
    victim.proc.kill(9);
    await victim.proc.exited;
    const r = await run.done;
    expect(r.code).toBe(0);
    expect(r.out).toContain("30 done, 0 failed");

    const rows = readResults(out);
    expectAllDone(rows, 30);
    for (const i of range(30)) expect(readFileSync(join(out, String(i), "out.txt"), "utf8")).toBe(`${i}\n`);
    expect(onVictim.length).toBeGreaterThan(0);
    // each task running on the victim at the kill either finished there just before it, or ran again elsewhere
    const moved = onVictim.filter((i) => (rows[i] as Row).node !== victim.name);
    expect(moved.length).toBeGreaterThan(0);
    for (const i of onVictim) {
      const row = rows[i] as Row;
      if (row.node === victim.name) expect(row.attempts).toBe(1);
      else {
        expect(row.attempts).toBeGreaterThanOrEqual(2);
        expect(NAMES).toContain(row.node as string);
        // the line names the node it failed on, then that it goes elsewhere (defect 10's wording)
        expect(r.err).toMatch(new RegExp(`^task ${i} failed on ${victim.name} \\(.*\\); rescheduled `, "m"));
      }
    }
    // a task rescheduled on the victim never ran there again
    for (const row of rows) if (row.attempts >= 2) expect(row.node).not.toBe(victim.name);

    // exactly once, from the runs' own traces: on the nodes that survived, every task ran exactly once,
    // except a task that finished on the victim (its trace died with the victim's containers)
    const runs = new Set<string>();
    for (const i of range(30))
      for (const line of readFileSync(join(out, String(i), "runs.log"), "utf8").split("\n"))
        if (line.trim()) runs.add(line.trim());
    const survivorRuns = new Map<number, string[]>();
    for (const line of runs) {
      const [, index] = line.split(" ");
      survivorRuns.set(Number(index), [...(survivorRuns.get(Number(index)) ?? []), line]);
    }
    for (const i of range(30)) {
      const expected = (rows[i] as Row).node === victim.name ? 0 : 1;
      // a container that served tasks on the victim is gone with it; runs seen here are on survivors
      const seen = (survivorRuns.get(i) ?? []).filter(
        (line) => !victimContainers.has(line.split(" ")[0] as string),
      );
      expect({ task: i, runs: seen.length }).toEqual({ task: i, runs: expected });
    }
  }, 90_000);
});
