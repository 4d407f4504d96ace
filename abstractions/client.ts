import { writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type {
  BatchProgress,
  BatchResult,
  BatchStatus,
  ClientDeps,
  CreateContainerBody,
  GroupView,
  Job,
  RemovedContainer,
  StartContainerOptions,
  StartedContainer,
  TrackedState,
} from "../client/index.ts";
import { P2prcError } from "../core/index.ts";
import type { TrackedContainer } from "../store/index.ts";
import { client, p2p } from "./lazy.ts";
import { init, type NodeOptions } from "./node.ts";
import { proxySshCommand } from "./self.ts";
import { peerTransport } from "./transport.ts";

/** Opens the node's store and IP table for one client call. */
export async function withClient<T>(
  options: NodeOptions,
  fn: (deps: ClientDeps) => Promise<T> | T,
): Promise<T> {
  const opened = await openClient(options);
  try {
    return await fn(opened.deps);
  } finally {
    await opened.close();
  }
}

/** The client's deps held open (a futures cluster keeps them until it closes); close() releases them. */
export async function openClient(
  options: NodeOptions,
): Promise<{ deps: ClientDeps; close: () => Promise<void> }> {
  const { PeerTable, relayFromRecords, relayTransport, relayedByRecords } = await p2p();
  const ctx = init(options);
  const store = ctx.openStore();
  let closeTransport: (() => Promise<void>) | undefined;
  try {
    const table = new PeerTable(store.peers, ctx.identity.nodeId, ctx.clock);
    // a node whose record says it is relayed is reached through its relay, TLS still pinned to it
    const record = (id: string) => table.record(id)?.record;
    const relayOf = relayFromRecords(record);
    const relayed = relayedByRecords(record);
    const transport = relayTransport({
      base: await peerTransport(ctx, table),
      identity: ctx.identity,
      relayOf,
      relayed,
      certOf: (id) => record(id)?.cert,
    });
    closeTransport = () => transport.close();
    const deps: ClientDeps = {
      tracking: store.client,
      identity: ctx.identity,
      clock: ctx.clock,
      views: () => table.views(),
      dead: () => table.dead(),
      transport,
      // ssh into a container on a relayed node: through p2prc itself, over the same signed stream path
      sshCommand: (id, port) =>
        relayed({ id, address: { host: "", port: 0 } }) ? proxySshCommand(options, id, port) : undefined,
    };
    const close = async () => {
      await closeTransport?.();
      store.close();
    };
    return { deps, close };
  } catch (err) {
    await closeTransport?.();
    store.close();
    throw err;
  }
}

/** `--exec-container <node>`: a container on a node (id, prefix, name, host:port or auto), tracked. */
export async function startContainer(
  options: NodeOptions,
  node: string,
  body: CreateContainerBody,
  o: StartContainerOptions = {},
): Promise<StartedContainer> {
  const c = await client();
  return withClient(options, (deps) => c.startContainer(deps, node, body, o));
}

/**
 * `--rm <node> --id <id>`: removed, or (a tracked container its node no longer has) `alreadyGone`. A
 * container neither tracked nor on the node is an E_NOT_FOUND error; `node` may be "" for a tracked one.
 */
export async function removeContainer(
  options: NodeOptions,
  node: string,
  id: string,
): Promise<RemovedContainer> {
  const c = await client();
  return withClient(options, (deps) => c.removeContainer(deps, node, id));
}

/** `--specs <node>` */
export async function getSpecs(options: NodeOptions, node: string) {
  const c = await client();
  return withClient(options, (deps) => c.getSpecs(deps, node));
}

/** `--vi <node>` */
export async function viewImages(options: NodeOptions, node: string) {
  const c = await client();
  return withClient(options, (deps) => c.viewImages(deps, node));
}

/** `--tc`: tracked containers, each checked against its node. */
export async function trackedContainers(
  options: NodeOptions,
): Promise<(TrackedContainer & { state: TrackedState })[]> {
  const c = await client();
  return withClient(options, (deps) => c.trackedContainers(deps));
}

/** Groups (P2PRC's `--cgroup`, `--group`, `--rmgroup`, `--groups`). */
export const groups = {
  async create(options: NodeOptions): Promise<GroupView> {
    const c = await client();
    return withClient(options, (deps) => c.createGroup(deps));
  },
  async add(options: NodeOptions, group: string, container: string): Promise<GroupView> {
    const c = await client();
    return withClient(options, (deps) => c.addToGroup(deps, group, container));
  },
  async removeMember(options: NodeOptions, group: string, container: string): Promise<GroupView> {
    const c = await client();
    return withClient(options, (deps) => c.removeFromGroup(deps, group, container));
  },
  async remove(options: NodeOptions, group: string): Promise<void> {
    const c = await client();
    return withClient(options, (deps) => c.removeGroup(deps, group));
  },
  async show(options: NodeOptions, group: string): Promise<GroupView> {
    const c = await client();
    return withClient(options, (deps) => c.showGroup(deps, group));
  },
  async list(options: NodeOptions): Promise<GroupView[]> {
    const c = await client();
    return withClient(options, (deps) => c.listGroups(deps));
  },
};

export interface RunBatchOptions {
  /** Node references (id, prefix, name, host:port); empty or ["auto"] = every live node with free capacity. */
  nodes?: string[];
  onProgress?: (p: BatchProgress) => void;
  /** Aborting it cancels the run: no task starts any more, the batch's warm containers are removed, and
   * the tasks left stay pending (`result.cancelled`; running the same job again resumes them). */
  signal?: AbortSignal;
  /** Runs only the tasks that failed in an earlier run of this job and output directory, again. */
  retryFailed?: boolean;
}

/** `p2prc batch status <out>`: the counts of the newest batch written to `outDir`, and its failed tasks. */
export async function batchStatus(options: NodeOptions, outDir: string): Promise<BatchStatus> {
  const c = await client();
  const store = init(options).openStore();
  try {
    return c.batchStatus(store.client, outDir);
  } finally {
    store.close();
  }
}

/** `p2prc batch job.json --out dir`: runs (or resumes) a batch job. */
export async function runBatch(
  options: NodeOptions,
  jobPath: string,
  outDir: string,
  o: RunBatchOptions = {},
): Promise<BatchResult> {
  const c = await client();
  const { job, text } = c.loadJob(jobPath);
  return runJob(options, job, text, dirname(resolve(jobPath)), outDir, o);
}

async function runJob(
  options: NodeOptions,
  job: Job,
  jobText: string,
  jobDir: string,
  outDir: string,
  o: RunBatchOptions,
): Promise<BatchResult> {
  const c = await client();
  return withClient(options, (deps) => {
    const views = deps.views();
    const refs = o.nodes?.filter((n) => n !== "auto") ?? [];
    const targets = refs.length
      ? refs.map((r) => c.resolveNode(r, views, {}, deps.dead?.()))
      : c.rankNodes(views).map((v) => c.resolveNode(v.id, views));
    return c.runBatch(deps, {
      job,
      jobText,
      jobDir,
      outDir,
      nodes: targets,
      onProgress: o.onProgress,
      signal: o.signal,
      retryFailed: o.retryFailed,
    });
  });
}

export interface MandelbrotDemoOptions extends RunBatchOptions {
  tiles: number;
  width: number;
  height: number;
  image: string;
  maxIter?: number;
  /** The PNG to write; the tiles' batch output goes to `<out>.tiles/`. */
  out: string;
}

/** `p2prc demo mandelbrot`: one task per tile on the network, assembled into one PNG. */
export async function demoMandelbrot(options: NodeOptions, d: MandelbrotDemoOptions) {
  const c = await client();
  const m = { width: d.width, height: d.height, tiles: d.tiles, maxIter: d.maxIter ?? 200, image: d.image };
  const job = c.mandelbrotJob(m);
  const tilesDir = `${resolve(d.out)}.tiles`;
  const result = await runJob(options, job, JSON.stringify(job), process.cwd(), tilesDir, d);
  if (result.cancelled) {
    const done = result.results.filter((r) => r.state === "done").length;
    throw new P2prcError(
      "E_CONFLICT",
      `cancelled: ${done} of ${d.tiles} tiles done; run the same command again to resume`,
    );
  }
  const failed = result.results.filter((r) => r.state !== "done");
  if (failed.length > 0) {
    throw new P2prcError(
      "E_NODE_UNREACHABLE",
      `${failed.length} of ${d.tiles} tiles failed (see ${tilesDir}/results.json)`,
    );
  }
  const png = c.toPng(c.assembleTiles(tilesDir, m), m);
  writeFileSync(d.out, png);
  return { out: resolve(d.out), bytes: png.length, tiles: d.tiles, width: d.width, height: d.height, result };
}
