import * as api from "../../abstractions/index.ts";
import { type Command, type CommandContext, stringFlag } from "../context.ts";
import { toJson } from "../io.ts";

function describe(ctx: CommandContext, v: api.ClusterView, verb: string): void {
  if (ctx.json) {
    ctx.io.out(toJson(v));
    return;
  }
  ctx.io.out(
    `${verb} cluster ${v.name} (host ${v.host.slice(0, 12)}…), version ${v.version}, ${v.members.length} members`,
  );
  if (v.file)
    ctx.io.out(
      `signed document: ${v.file} (members join with: p2prc --join <file or this node's host:port>)`,
    );
  if (v.notified === false)
    ctx.io.out(
      "the local node did not take it now (not running?): a running node reads it from the store at its next round, a stopped one when it starts",
    );
}

/** `--host-cluster <name> --users id,…` */
export const hostClusterCommand: Command = async (ctx) => {
  const users = (stringFlag(ctx, "users") ?? "").split(",");
  const v = await api.hostCluster(
    ctx.node,
    stringFlag(ctx, "host-cluster") ?? "",
    users,
    stringFlag(ctx, "role"),
  );
  describe(ctx, v, "hosting");
};

/** `--cluster-add id[=label]` */
export const clusterAddCommand: Command = async (ctx) => {
  const v = await api.clusterAdd(
    ctx.node,
    stringFlag(ctx, "cluster-add") ?? "",
    stringFlag(ctx, "cluster"),
    stringFlag(ctx, "role"),
  );
  describe(ctx, v, "updated");
};

/** `--cluster-remove id` */
export const clusterRemoveCommand: Command = async (ctx) => {
  const v = await api.clusterRemove(
    ctx.node,
    stringFlag(ctx, "cluster-remove") ?? "",
    stringFlag(ctx, "cluster"),
  );
  describe(ctx, v, "updated");
};

/** `--join file|host:port` */
export const joinCommand: Command = async (ctx) => {
  const joined = await api.joinCluster(ctx.node, stringFlag(ctx, "join") ?? "", stringFlag(ctx, "cluster"));
  if (ctx.json) return ctx.io.out(toJson(joined));
  for (const v of joined) describe(ctx, v, "joined");
};

/** `--leave-cluster name` */
export const leaveClusterCommand: Command = async (ctx) => {
  const left = await api.leaveCluster(ctx.node, stringFlag(ctx, "leave-cluster") ?? "");
  if (ctx.json) {
    ctx.io.out(toJson({ left }));
    return;
  }
  ctx.io.out(
    `left cluster ${left.name} (host ${left.host.slice(0, 12)}…); a running node applies it at its next round`,
  );
};

/** `--clusters` */
export const clustersCommand: Command = async (ctx) => {
  const list = await api.listClusters(ctx.node);
  if (ctx.json) return ctx.io.out(toJson(list));
  if (list.length === 0) return ctx.io.out("(no clusters: host one with --host-cluster, or --join one)");
  for (const v of list) {
    const state = v.hosting ? "hosting" : v.active ? "member" : "removed";
    ctx.io.out(`${v.name}  host ${v.host.slice(0, 12)}…  version ${v.version}  ${state}`);
    for (const m of v.members) ctx.io.out(`  ${m.id}  ${m.role}${m.label ? `  ${m.label}` : ""}`);
  }
};
