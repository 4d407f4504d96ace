// Parsing a subcommand's own flags (`p2prc batch`, `demo`, `proxy`, `forward`, `mappings`).
import type { ArgsDef } from "citty";
import { parseArgs } from "citty";
import { type CliIO, usageError } from "./io.ts";

function check(argv: string[], def: ArgsDef, usage: string): Record<string, unknown> {
  const known = new Set(
    Object.entries(def)
      .filter(([, d]) => d.type !== "positional")
      .map(([k]) => k),
  );
  for (const a of argv) {
    if (!a.startsWith("-") || /^-\d/.test(a)) continue;
    const name = a.replace(/^--?/, "").split("=")[0] as string;
    if (!a.startsWith("--") || !known.has(name)) throw usageError(`unknown flag ${a.split("=")[0]}`, usage);
  }
  try {
    return parseArgs(argv, def) as Record<string, unknown>;
  } catch (err) {
    // citty colours its messages: strip the ANSI colour codes (ESC [ n m) from the one line we print
    const ansi = new RegExp(`${String.fromCharCode(27)}\\[\\d+m`, "g");
    throw usageError((err as Error).message.replace(ansi, ""), usage);
  }
}

/**
 * A subcommand's arguments parsed by `def` (unknown flags and bad values are one usage line), or
 * undefined after printing `usage` for `-h`/`--help`.
 */
export function subcommandArgs(
  argv: string[],
  def: ArgsDef,
  usage: string,
  io: CliIO,
): Record<string, unknown> | undefined {
  if (argv.includes("-h") || argv.includes("--help")) {
    io.out(`usage: ${usage}`);
    return undefined;
  }
  return check(argv, def, usage);
}
