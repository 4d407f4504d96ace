// Image transfer with no registry (`p2prc image push`, Docs/CLI.md#images), side by side with the
// engine's own `docker save | docker load`, between two engines on this machine (each in its own network
// namespace: test/lab/engines.ts; needs root). The image: busybox plus a layer of SIZE_MB random bytes,
// built in engine `src`. Taking turns (who goes first swaps), RUNS times each, the image removed from
// `dst` before every run:
//   baseline  docker -H src save IMG | docker -H dst load
//   p2prc     `p2prc image push` (a process of its own, on src's engine, a member of the node) to a node
//             (`p2prc --as-server`, a process of its own over TLS, on dst's engine)
// Goals: p2prc throughput ≥ 0.7× the baseline's; peak RSS (VmHWM) of the pushing process and of the node
// ≤ 100 MB each, whatever the image's size. Run: node_modules/.bin/bun bench/transfer.ts (or `make bench`);
// P2PRC_TRANSFER_BENCH_MB sets the layer's size (default 200). Other load on the machine changes the figures.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import type Dockerode from "dockerode";
import { loadOrCreateIdentity } from "../core/index.ts";
import { freePorts } from "../server/index.ts";
import { type EngineLab, engineLabUnavailable, startEngineLab } from "../test/lab/engines.ts";
import { cleanEnv, connectOptions, median, skipper } from "./lib.ts";

const NAME = "transfer";
const SIZE_MB = Number(process.env.P2PRC_TRANSFER_BENCH_MB ?? 200);
const RUNS = 2;
const IMAGE = "p2prc-bench/transfer:1";
const GOALS = { ratio: 0.7, rssMb: 100 };
// What users run: the compiled ./p2prc (make build; bench/run.sh builds it) when it is there, else the
// sources through Bun, which holds ~20 MB more (the transpiler, no bytecode). The run says which.
const BINARY = join(import.meta.dir, "..", "p2prc");
const P2PRC = existsSync(BINARY) ? [BINARY] : [process.execPath, join(import.meta.dir, "..", "cli/main.ts")];

const skip = skipper(NAME);
const why = engineLabUnavailable();
if (why) skip(why);

/** Peak resident memory (VmHWM) of a live process, in bytes; 0 once it is gone. */
function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return Number(m?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

function sh(line: string, env: Record<string, string>): void {
  const r = Bun.spawnSync(["sh", "-c", line], { env, stdout: "pipe", stderr: "pipe", timeout: 600_000 });
  if (r.exitCode !== 0) throw new Error(`${line}: ${r.stderr.toString().trim()}`);
}

/** busybox plus one layer of `mb` random bytes, committed as IMAGE in `docker`. */
async function buildImage(docker: Dockerode, mb: number): Promise<void> {
  const c = await docker.createContainer({
    Image: "p2prc-test/busybox",
    Cmd: ["dd", "if=/dev/urandom", "of=/payload.bin", "bs=1048576", `count=${mb}`],
  });
  await c.start();
  await c.wait();
  const [repo, tag] = IMAGE.split(":") as [string, string];
  await c.commit({ repo, tag });
  await c.remove({ force: true });
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
const work = mkdtempSync(join(tmpdir(), "p2prc-transfer-"));
let lab: EngineLab | undefined;
let node: Subprocess | undefined;
try {
  lab = await startEngineLab(["src", "dst"]);
  const src = lab.dockerHost("src");
  const dst = lab.dockerHost("dst");
  const { default: Docker } = await import("dockerode");
  const srcEngine = new Docker(connectOptions(src));
  const dstEngine = new Docker(connectOptions(dst));
  await buildImage(srcEngine, SIZE_MB);
  const archiveBytes = (await new Response((await srcEngine.getImage(IMAGE).get()) as never).arrayBuffer())
    .byteLength;

  const clientHome = join(work, "client");
  const nodeHome = join(work, "node");
  const clientId = loadOrCreateIdentity(
    join(clientHome, "identity/node.key"),
    join(clientHome, "identity/node.pub"),
  ).nodeId;
  const [port] = await freePorts(1, "127.0.0.1");
  node = Bun.spawn([...P2PRC, "--as-server"], {
    env: cleanEnv({
      P2PRC: nodeHome,
      DOCKER_HOST: dst,
      P2PRC_SERVER_HOST: "127.0.0.1",
      P2PRC_SERVER_PORT: String(port),
      P2PRC_TRUSTED: clientId,
      P2PRC_MEMBER_IMAGE_QUOTA_MB: "100000",
      P2PRC_DEFAULT_IMAGE: "p2prc-test/busybox",
      P2PRC_LOG_LEVEL: "warn",
    }),
    stdout: "ignore",
    stderr: "inherit",
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await fetch(`https://127.0.0.1:${port}/v1/health`, { tls: { rejectUnauthorized: false } })
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) break;
    if (Date.now() > deadline || node.exitCode !== null) throw new Error("the node did not start");
    await Bun.sleep(100);
  }

  const nodeIdle = peakRss(node.pid);
  const clientEnv = cleanEnv({ P2PRC: clientHome, DOCKER_HOST: src, P2PRC_LOG_LEVEL: "warn" });
  const removeFromDst = () =>
    dstEngine
      .getImage(IMAGE)
      .remove({ force: true })
      .catch(() => undefined);

  const baseline = async (): Promise<number> => {
    await removeFromDst();
    const t = performance.now();
    sh(`docker -H ${src} save ${IMAGE} | docker -H ${dst} load -q`, cleanEnv());
    return (performance.now() - t) / 1000;
  };
  const clientPeaks: number[] = [];
  const p2prc = async (): Promise<number> => {
    await removeFromDst();
    const t = performance.now();
    const push = Bun.spawn([...P2PRC, "image", "push", `127.0.0.1:${port}`, IMAGE, "--json"], {
      env: clientEnv,
      stdout: "pipe",
      stderr: "pipe",
    });
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, peakRss(push.pid));
    }, 20);
    const [code, out, err] = await Promise.all([
      push.exited,
      new Response(push.stdout).text(),
      new Response(push.stderr).text(),
    ]);
    clearInterval(sampler);
    const s = (performance.now() - t) / 1000;
    if (code !== 0) throw new Error(`p2prc image push exited ${code}: ${err.trim() || out.trim()}`);
    clientPeaks.push(peak);
    return s;
  };

  const times = { baseline: [] as number[], p2prc: [] as number[] };
  for (let run = 0; run < RUNS; run++) {
    const order = run % 2 === 0 ? (["baseline", "p2prc"] as const) : (["p2prc", "baseline"] as const);
    for (const which of order) times[which].push(which === "baseline" ? await baseline() : await p2prc());
  }
  const nodePeak = peakRss(node.pid);
  const ls = Bun.spawn([...P2PRC, "image", "ls", `127.0.0.1:${port}`], { env: clientEnv, stdout: "ignore" });
  let lsPeak = 0;
  const lsSampler = setInterval(() => {
    lsPeak = Math.max(lsPeak, peakRss(ls.pid));
  }, 10);
  await ls.exited;
  clearInterval(lsSampler);
  const baseS = median(times.baseline);
  const pushS = median(times.p2prc);
  const rate = (s: number) => archiveBytes / s / 1e6;
  const ratio = baseS / pushS;
  const clientPeak = Math.max(...clientPeaks);
  const verdict = (ok: boolean) => (ok ? "met" : "NOT met");
  console.log(
    `image ${IMAGE}: busybox + ${SIZE_MB} MB random layer, archive ${mb(archiveBytes)} MB; ${RUNS} runs each, alternating; load ${loadavg()[0]?.toFixed(2)}; p2prc: ${P2PRC.length === 1 ? "the compiled ./p2prc" : "the sources through bun (no ./p2prc)"}`,
  );
  console.log(
    `baseline  docker save | docker load (two engines)  median ${baseS.toFixed(2)} s  ${rate(baseS).toFixed(0)} MB/s  runs ${times.baseline.map((x) => x.toFixed(2)).join(" ")}`,
  );
  console.log(
    `p2prc     p2prc image push → node over TLS         median ${pushS.toFixed(2)} s  ${rate(pushS).toFixed(0)} MB/s  runs ${times.p2prc.map((x) => x.toFixed(2)).join(" ")}`,
  );
  console.log(
    `throughput p2prc/baseline ${ratio.toFixed(2)}× (goal ≥ ${GOALS.ratio}×: ${verdict(ratio >= GOALS.ratio)})`,
  );
  console.log(
    `peak RSS  pushing process ${mb(clientPeak)} MB (an image ls: ${mb(lsPeak)} MB), node ${mb(nodePeak)} MB (${mb(nodeIdle)} MB once started) (goal ≤ ${GOALS.rssMb} MB each: ${verdict(Math.max(clientPeak, nodePeak) <= GOALS.rssMb * 1e6)})`,
  );
} finally {
  if (node && node.exitCode === null) {
    node.kill("SIGTERM");
    await Promise.race([node.exited, Bun.sleep(15_000)]);
    if (node.exitCode === null) node.kill(9);
  }
  await lab?.close();
  rmSync(work, { recursive: true, force: true });
}
