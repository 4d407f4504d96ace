// Futures for programs that embed p2prc (Docs/Futures.md): `const cluster = await futures.cluster(options)`,
// `cluster.future(fn, args)`, `await f.value()`, `cluster.map(items, fn)`, `await cluster.close()`.
import type { ClusterOptions, FutureCluster, FutureOptions, ScriptResult } from "../client/index.ts";
import { openClient } from "./client.ts";
import { client } from "./lazy.ts";
import type { NodeOptions } from "./node.ts";

/** A cluster's options: the home to call from, the nodes to use and the futures' defaults. */
export interface FutureClusterOptions extends ClusterOptions {
  /** The caller's home (its identity, IP table and clusters); default as for every command. */
  home?: NodeOptions;
  /** Node references the futures may use; default (or ["auto"]): every live node with free capacity. */
  nodes?: string[];
}

/**
 * Futures on the caller's clusters: its functions run in warm, sandboxed containers of p2prc's runtime on
 * the nodes, with the batch runner's leases and rescheduling. Close it (or `await using`) to remove them.
 *
 * @example
 *   const c = await cluster({ nodes: ["auto"] });
 *   const f = c.future((a: number, b: number) => a + b, [1, 2]);
 *   console.log(await f.value()); // 3
 *   await c.close();
 */
export async function cluster(options: FutureClusterOptions = {}): Promise<FutureCluster> {
  const c = await client();
  const opened = await openClient(options.home ?? {});
  const { deps } = opened;
  const refs = (options.nodes ?? []).filter((n) => n !== "auto");
  const nodes = (ref: string) => {
    const views = deps.views();
    if (ref !== "auto") return [c.resolveNode(ref, views, {}, deps.dead?.())];
    return refs.length
      ? refs.map((r) => c.resolveNode(r, views, {}, deps.dead?.()))
      : c.rankNodes(views).map((v) => c.resolveNode(v.id, views));
  };
  return new c.FutureCluster({ client: deps, nodes, onClose: opened.close }, options);
}

/** `p2prc run <node|auto> script.ts [args…]`'s options. */
export interface RunScriptOptions extends FutureOptions {
  home?: NodeOptions;
}

/**
 * `p2prc run <node|auto> script.ts [args…]`: the script, bundled with its imports, runs on the node (any
 * node of the cluster for "auto") in p2prc's runtime container; its stdout, stderr and exit code come back.
 */
export async function runScript(
  node: string,
  path: string,
  args: string[] = [],
  o: RunScriptOptions = {},
): Promise<ScriptResult> {
  const fc = await cluster({
    home: o.home,
    nodes: [node],
    replay: false,
    cpus: o.cpus,
    memoryMb: o.memoryMb,
  });
  try {
    return await fc.runScript(path, args, { timeoutMs: o.timeoutMs, retries: o.retries });
  } finally {
    await fc.close();
  }
}
