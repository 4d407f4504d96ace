// Batch control across real processes and the real engine: Ctrl-C (a real SIGINT to the CLI process)
// cancels a batch, removes its warm containers and leaves it resumable; a second Ctrl-C exits at once;
// `batch status` and `--retry-failed` read and rerun what the store says.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import Docker from "dockerode";
import { removeNodeNetworks, spawnNode, spawnWatched, waitFor, waitUntilKnown } from "./support.ts";

/** p2prc from source, as the nodes and the client run here. */
const P2PRC = [process.execPath, resolve(import.meta.dir, "../cli/main.ts")];
const DOCKER_HOST = process.env.DOCKER_HOST ?? "unix:///tmp/p2prc-engine/docker.sock";
const docker = new Docker({ socketPath: DOCKER_HOST.replace(/^unix:\/\//, "") });
const root = mkdtempSync(join(tmpdir(), "p2prc-batch-control-"));
/** Every process started here (killed at the end), and the node's id once it serves. */
const procs: Subprocess[] = [];
let nodeId = "";
const clientHome = join(root, "client");

/** The client's env: its home, plain HTTP and warn-level logs (as the node), the test's engine. */
const CLIENT = { P2PRC: clientHome, P2PRC_LOG_LEVEL: "warn", P2PRC_TLS: "false" };
const cliEnv = () => ({ PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: root, DOCKER_HOST, ...CLIENT });

const spawnCli = (args: string[]) => spawnWatched([...P2PRC, ...args], { cwd: root, env: cliEnv() }, procs);
const cli = (args: string[]) => spawnCli(args).done;

/** The node's containers, as its engine lists them. */
const onEngine = () => docker.listContainers({ all: true, filters: { label: [`p2prc.node=${nodeId}`] } });
/**
 * The node's containers once the node has done removing them: a batch's pool goes right after the node
 * answered (DELETE ?background=1), so the client may exit before the engine is done.
 */
const onEngineSettled = async () => {
  await waitFor(
    "the node's removals",
    async () => ((await onEngine()).length ? undefined : true),
    30_000,
  ).catch(() => undefined);
  return onEngine();
};

/** A job whose tasks sleep for the seconds in delay.txt (an input: the job's text, so its key, stays the same). */
function sleepyJob(name: string, delay: number, tasks: number) {
  writeFileSync(join(root, "delay.txt"), String(delay));
  const path = join(root, `${name}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      image: "p2prc-test/busybox",
      command: ["sh", "-c", 'sleep "$(cat delay.txt)"; echo "$P2PRC_TASK_INDEX" > out.txt'],
      inputs: ["delay.txt"],
      outputs: ["out.txt"],
      tasks,
      maxPerNode: 2,
    }),
  );
  return path;
}

/** Waits until `n` tasks of the batch writing to `out` are running (the client's own state.db). */
async function running(out: string, n: number, proc: Subprocess, err: { text: string }) {
  const { Database } = await import("bun:sqlite");
  await waitFor(
    `${n} tasks running`,
    async () => {
      if (proc.exitCode !== null) throw new Error(`batch ended early: ${err.text}`);
      const db = new Database(join(clientHome, "state.db"), { readonly: true });
      try {
        const r = db
          .query<{ n: number }, [string]>(
            `SELECT count(*) AS n FROM batch_tasks t JOIN batches b ON b.id = t.batch_id
              WHERE b.out_dir = ? AND t.state = 'running'`,
          )
          .get(resolve(out));
        return (r?.n ?? 0) >= n ? true : undefined;
      } catch {
        return undefined; // the store is not there yet
      } finally {
        db.close();
      }
    },
    30_000,
    50,
  );
}

/** Starts a batch of hour-long tasks and waits until its two warm containers run them. */
async function startWarm(name: string) {
  const job = sleepyJob(name, 3600, 4);
  const out = join(root, `out-${name}`);
  const first = spawnCli(["batch", job, "--out", out]);
  await running(out, 2, first.proc, first.err);
  // (a container whose create answer never came back to the client is the node's, gone with its lease)
  await warm(2);
  await Bun.sleep(500); // their execs have started
  return first;
}

/** Waits until `n` warm containers run on the engine and the client has tracked them (their create answered). */
async function warm(n: number) {
  const { Database } = await import("bun:sqlite");
  await waitFor(
    `${n} warm containers running and tracked`,
    async () => {
      const up = (await onEngine()).filter((c) => c.State === "running").length;
      const db = new Database(join(clientHome, "state.db"), { readonly: true });
      try {
        const tracked = db.query<{ n: number }, []>("SELECT count(*) AS n FROM tracked").get()?.n ?? 0;
        return up === n && tracked === n ? true : undefined;
      } finally {
        db.close();
      }
    },
    30_000,
    50,
  );
}

beforeAll(async () => {
  const node = await spawnNode({
    home: join(root, "node"),
    procs,
    name: "bc-node",
    command: P2PRC,
    env: { HOME: root, DOCKER_HOST, P2PRC_MACHINE_NAME: "bc-node", P2PRC_OPEN_NETWORK: "true" },
  });
  nodeId = node.nodeId;
  const added = await cli(["--as", `127.0.0.1:${node.port}`]);
  if (added.code !== 0) throw new Error(`--as failed: ${added.err}`);
  await waitUntilKnown(cli, [nodeId]);
}, 40_000);

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill(9);
  await Promise.all(procs.map((p) => p.exited));
  // what a failed test left on the engine
  for (const c of await onEngine())
    await docker
      .getContainer(c.Id)
      .remove({ force: true })
      .catch(() => {});
  await removeNodeNetworks(docker, [nodeId]);
  rmSync(root, { recursive: true, force: true });
}, 30_000);

describe("batch control", () => {
  test("Ctrl-C: no new tasks, the warm containers are removed, exit 130; status says pending; a rerun resumes (defect 3)", async () => {
    const job = sleepyJob("cancel", 60, 6);
    const out = join(root, "out-cancel");
    const args = ["batch", job, "--out", out];
    const first = spawnCli(args);
    await running(out, 2, first.proc, first.err);
    await warm(2);
    await Bun.sleep(500); // their execs have started
    const t0 = Date.now();
    first.proc.kill("SIGINT");
    const r = await first.done;
    // the tasks sleep 60 s: ending well before means the cancel interrupted them
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r.code).toBe(130);
    expect(r.err).toContain("cancelling");
    expect(r.out).toContain("cancelled: 0 done, 0 failed, 6 left; resume with: p2prc batch");
    expect(await onEngineSettled()).toEqual([]);
    // nothing left that --tc would have to list
    const tc = await cli(["--tc", "--json"]);
    expect(JSON.parse(tc.out)).toEqual([]);

    const status = await cli(["batch", "status", out, "--json"]);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.out)).toMatchObject({ total: 6, done: 0, pending: 6, running: 0, failed: 0 });

    sleepyJob("cancel", 0, 6);
    const second = await cli(args);
    expect(second.err).not.toContain("p2prc:");
    expect(second.code).toBe(0);
    expect(second.out).toContain("6 done, 0 failed");
    expect(second.out).toContain("(resumed)");
    // the attempts the cancel interrupted do not count
    const rows = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { attempts: number }[];
    expect(rows.map((t) => t.attempts)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(await onEngineSettled()).toEqual([]);
  }, 90_000);

  test("a second Ctrl-C exits at once", async () => {
    const first = await startWarm("twice");
    first.proc.kill("SIGINT");
    // the second once the first was seen (signals sent together may arrive as one)
    await waitFor(
      "the first Ctrl-C seen",
      async () => (first.err.text.includes("cancelling") ? true : undefined),
      5000,
      5,
    );
    first.proc.kill("SIGINT");
    const r = await first.done;
    expect(r.code).toBe(130);
    // it did not wait for the cancel to finish and print its summary
    expect(r.out).not.toContain("cancelled:");
    // what it left running (the removals the first Ctrl-C had sent may still finish) is listed by --tc
    await Bun.sleep(2000);
    const left = (await onEngine()).map((c) => c.Id);
    const tc = JSON.parse((await cli(["--tc", "--json"])).out) as { id: string }[];
    for (const id of left) expect(tc.map((t) => t.id)).toContain(id);
    for (const t of tc) expect((await cli(["--rm", "bc-node", "--id", t.id])).code).toBe(0);
    expect(await onEngine()).toEqual([]);
    expect(JSON.parse((await cli(["--tc", "--json"])).out)).toEqual([]);
  }, 60_000);

  test("a client killed mid-batch leaves its warm containers listed in --tc, so --rm can remove them (defect 3)", async () => {
    const first = await startWarm("killed");
    first.proc.kill(9);
    await first.done;
    const left = (await onEngine()).map((c) => c.Id).sort();
    expect(left.length).toBe(2);
    const tc = JSON.parse((await cli(["--tc", "--json"])).out) as {
      id: string;
      state: string;
      image: string;
    }[];
    expect(tc.map((t) => t.id).sort()).toEqual(left);
    expect(tc.every((t) => t.state === "running" && t.image === "p2prc-test/busybox")).toBe(true);
    for (const id of left) expect((await cli(["--rm", "bc-node", "--id", id])).code).toBe(0);
    expect(await onEngine()).toEqual([]);
    expect(JSON.parse((await cli(["--tc", "--json"])).out)).toEqual([]);
  }, 60_000);

  test("batch status names the failed tasks; --retry-failed runs only those again", async () => {
    writeFileSync(join(root, "fail.txt"), "1 3");
    const path = join(root, "fails.json");
    writeFileSync(
      path,
      JSON.stringify({
        image: "p2prc-test/busybox",
        command: ["sh", "-c", 'grep -qw "$P2PRC_TASK_INDEX" fail.txt && exit 7; echo ok'],
        inputs: ["fail.txt"],
        tasks: 4,
      }),
    );
    const out = join(root, "out-fails");
    const first = await cli(["batch", path, "--out", out]);
    expect(first.code).toBe(1);
    expect(first.out).toContain("2 done, 2 failed");
    expect(first.err).toContain(
      `hint: run only the failed tasks again: p2prc batch ${path} --out ${out} --retry-failed`,
    );

    const status = await cli(["batch", "status", out]);
    expect(status.code).toBe(0);
    expect(status.out).toContain("2/4 done, 2 failed, 0 pending, 0 running");
    expect(status.out).toContain("task 1 failed on bc-node: exit 7");
    expect(status.out).toContain("task 3 failed on bc-node: exit 7");

    writeFileSync(join(root, "fail.txt"), "");
    const again = await cli(["batch", path, "--out", out, "--retry-failed"]);
    expect(again.code).toBe(0);
    expect(again.out).toContain("4 done, 0 failed");
    const ran = [...again.err.matchAll(/^task (\d+) done/gm)].map((m) => Number(m[1])).sort();
    expect(ran).toEqual([1, 3]);

    const none = await cli(["batch", "status", join(root, "never-ran")]);
    expect(none.code).toBe(1);
    expect(none.err).toContain("no batch has written to");
  }, 90_000);
});
