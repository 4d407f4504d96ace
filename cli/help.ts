// A deep import on purpose: help and --version answer before the rest of core loads.
import { VERSION } from "../core/version.ts";
import { ACTIONS } from "./actions.ts";
import { FLAGS, type FlagName, GLOBAL_FLAGS, MODIFIERS } from "./flags.ts";
import {
  CONTAINER_HELP,
  CONTAINER_VERBS,
  IMAGE_HELP,
  RELAY_HELP,
  RELAY_SUBCOMMANDS,
  RUN_HELP,
} from "./verbs.ts";

function line(name: FlagName): [string, string] {
  const def = FLAGS[name];
  const value = def.type === "string" ? ` <${def.valueHint ?? "value"}>` : "";
  const aliases = (def.alias ?? []).map((a) => (a.length === 1 ? `-${a}` : `--${a}`));
  const left = [`--${name}${value}`, ...aliases].join(", ");
  const right = def.pending ? `${def.description} (not available yet)` : def.description;
  return [left, right];
}

function section(title: string, names: FlagName[]): string {
  const rows = names.map(line);
  const width = Math.min(48, Math.max(...rows.map(([l]) => l.length)));
  return [
    `${title}:`,
    ...rows.map(([l, r]) =>
      l.length > width ? `  ${l}\n  ${" ".repeat(width)}  ${r}` : `  ${l.padEnd(width)}  ${r}`,
    ),
  ].join("\n");
}

/** The subcommands' usage lines: `p2prc -h`, `p2prc batch -h` and their usage errors print these. */
export const SUBCOMMAND_USAGE = {
  batch: "p2prc batch <job.json|job.yaml> --out <dir> [--nodes <list>|auto] [--retry-failed] [--json]",
  status: "p2prc batch status <dir> [--json]",
  ui: "p2prc ui [--json]   (a one-time login link to this machine's running node's dashboard)",
  demo: "p2prc demo mandelbrot --tiles N [--size WxH] [--image ref] [--max-iter N] --out mandelbrot.png [--nodes <list>] [--json]",
};

/** `p2prc -h`: every flag with its P2PRC aliases and one line of help. */
export function renderHelp(): string {
  // Listed in the order they run, except the server: it runs last but is listed first.
  const actions = ACTIONS.map((a): FlagName => a.name).filter((n) => n !== "as-server");
  return [
    `p2prc ${VERSION} — peer-to-peer compute: run tasks in sandboxed containers on trusted peers`,
    "",
    "Usage: p2prc <action flag> [modifiers] [--json]",
    "",
    section("Actions", ["as-server", ...actions]),
    "",
    section("Modifiers", Object.keys(MODIFIERS) as FlagName[]),
    "",
    section("Global", Object.keys(GLOBAL_FLAGS) as FlagName[]),
    "",
    "Subcommands (each with -h):",
    `  ${SUBCOMMAND_USAGE.batch}`,
    `  ${SUBCOMMAND_USAGE.status}`,
    `  ${SUBCOMMAND_USAGE.demo}`,
    `  ${SUBCOMMAND_USAGE.ui}`,
    ...CONTAINER_VERBS.map((v) => `  ${CONTAINER_HELP[v]}`),
    "  (<node> may be left out for a container --tc tracks; each verb takes -h)",
    ...RELAY_SUBCOMMANDS.map((v) => `  ${RELAY_HELP[v]}`),
    `  ${IMAGE_HELP}`,
    `  ${RUN_HELP}`,
    "",
    "Single-dash long names (-dc, -touch) work as in P2PRC. Config: p2prc --vc; docs: Docs/.",
  ].join("\n");
}
export { VERSION };
