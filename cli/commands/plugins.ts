import { type PluginEntry, type PluginRunResult, plugins } from "../../abstractions/index.ts";
import { P2prcError } from "../../core/index.ts";
import { type Command, type CommandContext, stringFlag } from "../context.ts";
import { toJson, usageError } from "../io.ts";
import { envFlag } from "./client.ts";

function entryLine(p: PluginEntry): string {
  if (!p.ok) return `${p.name}  BROKEN: ${p.error}`;
  const ports = `${p.ports} port${p.ports === 1 ? "" : "s"}`;
  return [p.name, p.version ?? "-", p.kind, ports, p.description.split("\n")[0]].join("  ");
}

/** `--vp` / `--ViewPlugins`: the installed plugins, a broken one on its own line. */
export const viewPluginsCommand: Command = async (ctx) => {
  const list = await plugins.list(ctx.node);
  if (ctx.json) return ctx.io.out(toJson(list.map((p) => ({ ...p, manifest: undefined }))));
  if (list.length === 0) return ctx.io.out("(no plugins installed; p2prc --pp <source> installs one)");
  for (const p of list) ctx.io.out(entryLine(p));
};

/** `--pp <source>` / `--PullPlugin`: a folder, a tar, a git URL or `peer:<node>/<name>`. */
export const pullPluginCommand: Command = async (ctx) => {
  const source = stringFlag(ctx, "pull-plugin") as string;
  const p = await plugins.install(ctx.node, source);
  if (ctx.json) return ctx.io.out(toJson({ ...p, manifest: undefined }));
  ctx.io.out(`installed ${p.name} ${p.version ?? ""} (${p.kind}) from ${source}`.replace("  ", " "));
  ctx.io.out(`sha256 ${p.sha256}`);
};

/** `--rp <name>` / `--RemovePlugin` */
export const removePluginCommand: Command = async (ctx) => {
  const name = stringFlag(ctx, "remove-plugin") as string;
  await plugins.remove(ctx.node, name);
  ctx.io.out(ctx.json ? toJson({ removed: name }) : `removed plugin ${name}`);
};

/** Output lines as they come, `<container> out| line`; a partial line waits for the rest. */
function livePrinter(ctx: CommandContext) {
  const partial = new Map<string, string>();
  const streamed = new Set<string>();
  const line = (container: string, stream: "stdout" | "stderr", text: string) =>
    ctx.io.out(`${container.slice(0, 12)} ${stream === "stdout" ? "out" : "err"}| ${text}`);
  return {
    output(container: string, stream: "stdout" | "stderr", text: string) {
      streamed.add(container);
      const lines = `${partial.get(`${container} ${stream}`) ?? ""}${text}`.split("\n");
      partial.set(`${container} ${stream}`, lines.pop() ?? "");
      for (const l of lines) line(container, stream, l);
    },
    result(r: PluginRunResult) {
      for (const stream of ["stdout", "stderr"] as const) {
        const rest = partial.get(`${r.container} ${stream}`);
        if (rest) line(r.container, stream, rest);
        partial.delete(`${r.container} ${stream}`);
        // what was not streamed (an Ansible plugin's), all at once
        const text = r[stream].replace(/\n$/, "");
        if (!streamed.has(r.container) && text)
          for (const l of text.split("\n")) line(r.container, stream, l);
      }
      const where = `${r.container.slice(0, 12)}${r.node ? ` on ${r.node}` : ""}`;
      const ports = r.ports.length
        ? `, ports ${r.ports.map((p) => `${p.internal}->${p.external}`).join(", ")}`
        : "";
      const how = r.ok
        ? `ok${ports}`
        : r.error
          ? `not run: ${r.error}`
          : `failed: exit ${r.exitCode}${r.timedOut ? " (timed out)" : ""}`;
      ctx.io.out(`${r.plugin} on ${where}: ${how}`);
    },
  };
}

/** `--plugin <name> --id <container|node/container|group>` / `--ExecutePlugin` */
export const executePluginCommand: Command = async (ctx) => {
  const name = stringFlag(ctx, "execute-plugin") as string;
  const id = stringFlag(ctx, "id");
  if (!id) {
    throw usageError(
      `--plugin ${name} needs --id <container|group>`,
      "a container (its id, name, or node/id) or a group id (grp…) from --groups",
    );
  }
  const live = ctx.json ? undefined : livePrinter(ctx);
  const results = await plugins.run(ctx.node, name, id, {
    options: envFlag(ctx),
    onOutput: live?.output,
    onResult: live?.result,
  });
  if (ctx.json) ctx.io.out(toJson(results));
  const failed = results.filter((r) => !r.ok);
  if (failed.length > 0) {
    throw new P2prcError(
      "E_INTERNAL",
      `plugin ${name} failed on ${failed.length} of ${results.length} container(s)`,
    );
  }
};
