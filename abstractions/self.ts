// Commands p2prc prints that run p2prc itself (ssh's ProxyCommand), so that they work as printed.
import { basename, resolve } from "node:path";
import type { NodeOptions } from "./node.ts";

/** How this process runs p2prc: the compiled binary, or bun and the entry script it runs. */
export function selfCommand(options: NodeOptions): string[] {
  if (options.command?.length) return options.command;
  const script = process.argv[1];
  const viaBun = /^bun(-debug)?(\.exe)?$/.test(basename(process.execPath));
  return viaBun && script && /\.[cm]?[jt]s$/.test(script)
    ? [process.execPath, resolve(script)]
    : [process.execPath];
}

/** One word for a POSIX shell, as it goes inside the single-quoted ProxyCommand (double quotes). */
function word(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `"${s.replace(/(["\\$`])/g, "\\$1")}"`;
}

/**
 * `ssh -o ProxyCommand='p2prc proxy <node> %p' -p <port> root@<node>`: ssh into a container's published
 * ssh port on a node reached through its relay, as this node's key (its home kept when chosen by
 * `--config-dir` or `P2PRC`, so the command works from another shell).
 */
export function proxySshCommand(options: NodeOptions, nodeId: string, port: number): string {
  // the home this call used, when it is not the default one ssh's child would find (--config-dir or P2PRC)
  const chosen = options.configDir ?? (options.env ?? process.env).P2PRC;
  const home = chosen ? ["--config-dir", resolve(chosen)] : [];
  const proxy = [...selfCommand(options), "proxy", nodeId, "%p", ...home].map(word).join(" ");
  return `ssh -o ProxyCommand='${proxy.replace(/'/g, `'\\''`)}' -p ${port} root@${nodeId.slice(0, 12)}`;
}
