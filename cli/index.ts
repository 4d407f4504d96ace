/** cli: the `p2prc` command line (citty). Thin: parse → call abstractions → print. */

export type { CliIO } from "./io.ts";
export type { RunOptions } from "./run.ts";
export { normalizeArgs, runCli } from "./run.ts";
