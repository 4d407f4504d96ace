// Futures for programs that embed p2prc (Docs/Futures.md): `const cluster = await futures.cluster(options)`,
// `cluster.future(fn, args)`, `await f.value()`, `cluster.map(items, fn)`, `await cluster.close()`.
import type { ClusterOptions, FutureCluster } from "../client/index.ts";
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
