import {
  addCustomInformation,
  addRootNode,
  addServer,
  type GossipRefusal,
  type PeerView,
  updateIPTable,
  viewIPTable,
} from "../../abstractions/index.ts";
import { formatAddress } from "../../core/index.ts";
import { type Command, stringFlag } from "../context.ts";
import { toJson, usageError } from "../io.ts";

/** "direct", or "relay via <relay name or id>" (the first relay the record names, "+N" for more). */
export function reachLabel(v: PeerView, views: readonly PeerView[]): string {
  if (v.reach !== "relay") return "direct";
  const [first, ...rest] = v.relays;
  if (!first) return "relay";
  const name = views.find((o) => o.id === first)?.name ?? first.slice(0, 12);
  return `relay via ${name}${rest.length ? ` +${rest.length}` : ""}`;
}

function printTable(io: { out(t: string): void }, json: boolean, views: PeerView[]): void {
  if (json) {
    const rows = views.map((v) => ({
      id: v.id,
      name: v.name,
      address: v.address ?? null,
      port: v.port ?? null,
      nat: v.nat,
      reach: v.reach,
      relays: v.relays,
      latencyMs: v.latencyMs ?? null,
      lastSeen: v.lastSeen,
      metadata: v.metadata,
    }));
    io.out(toJson(rows));
    return;
  }
  if (views.length === 0) {
    io.out("(no nodes known yet: add one with --as host:port)");
    return;
  }
  const rows = views.map((v) => [
    v.id.slice(0, 12) + (v.self ? "*" : ""),
    v.name,
    v.address && v.port ? formatAddress({ host: v.address, port: v.port }) : "-",
    reachLabel(v, views),
    v.latencyMs === undefined ? "-" : `${v.latencyMs.toFixed(1)} ms`,
    v.state,
    v.metadata.replace(/\s+/g, " ").slice(0, 40),
  ]);
  const head = ["ID", "NAME", "ADDRESS", "REACH", "LATENCY", "STATE", "METADATA"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  for (const r of [head, ...rows])
    io.out(
      r
        .map((c, i) => c.padEnd(widths[i] as number))
        .join("  ")
        .trimEnd(),
    );
}

/** `--ls` / `--ListServers` */
export const listServersCommand: Command = async ({ io, json, node }) => {
  printTable(io, json, await viewIPTable(node));
};

/** `--us` / `--UpdateServerList` */
export const updateServerListCommand: Command = async ({ io, json, node }) => {
  let refused: GossipRefusal[] = [];
  printTable(io, json, await updateIPTable(node, { onRefused: (r) => (refused = r) }));
  // defect 9: a table with only this node is not the whole story when peers refused it
  if (refused.length === 0) return;
  io.err(`p2prc: ${refused.length} of the nodes asked refused this node (not a member there):`);
  for (const r of refused) io.err(`  ${r.message}`);
  io.err(
    "hint: send them this node's id (p2prc --whoami) to add: --cluster-add on the cluster's host, or trusted",
  );
};

/** `--as host:port` / `--AddServer` */
export const addServerCommand: Command = async (ctx) => {
  const a = await addServer(ctx.node, stringFlag(ctx, "add-server") ?? "");
  ctx.io.out(
    ctx.json
      ? toJson({ added: a })
      : `added ${formatAddress(a)}; it is contacted at the next gossip round (or --us)`,
  );
};

/** `--arn --ip H -p P` / `--AddRootNode` */
export const addRootNodeCommand: Command = async (ctx) => {
  const host = stringFlag(ctx, "ip");
  const port = stringFlag(ctx, "ports");
  if (!host || !port) throw usageError("--add-root-node needs --ip <host> and -p <port>");
  const a = await addRootNode(ctx.node, host, port);
  ctx.io.out(
    ctx.json ? toJson({ added: a, root: true }) : `added root node ${formatAddress(a)} (the table is kept)`,
  );
};

/** `--amd text` / `--AddMetaData` */
export const addMetadataCommand: Command = async (ctx) => {
  const text = stringFlag(ctx, "add-metadata") ?? "";
  await addCustomInformation(ctx.node, text);
  ctx.io.out(
    ctx.json
      ? toJson({ metadata: text })
      : "metadata set; a running node spreads it with its next gossip round",
  );
};
