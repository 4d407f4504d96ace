// `p2prc ui`: a one-time login link to the dashboard of this machine's running node.
import type { ArgsDef } from "citty";
import { uiLink } from "../../abstractions/index.ts";
import { SUBCOMMAND_USAGE } from "../help.ts";
import { type CliIO, toJson } from "../io.ts";
import type { RunOptions } from "../run.ts";
import { subcommandArgs } from "../subcommand.ts";

const ARGS = {
  json: { type: "boolean" },
  "config-dir": { type: "string" },
} satisfies ArgsDef;

/** Prints the link (stdout) and how long it stays good (stderr). */
export async function runUi(argv: string[], io: CliIO, options: RunOptions): Promise<number> {
  const args = subcommandArgs(argv, ARGS, SUBCOMMAND_USAGE.ui, io);
  if (!args) return 0;
  const node = { configDir: args["config-dir"] as string | undefined, env: options.env ?? process.env };
  const link = await uiLink(node);
  if (args.json === true) {
    io.out(toJson(link));
    return 0;
  }
  io.out(link.url);
  const minutes = Math.max(1, Math.round((link.expiresAt - Date.now()) / 60_000));
  io.err(`open it in a browser within ${minutes} minutes; it works once (run p2prc ui again for another)`);
  return 0;
}
