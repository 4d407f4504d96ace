/**
 * node:crypto, loaded on first use. A compiled `p2prc` that imports it statically pays for it on every start
 * (measured side by side: two compiled programs, empty and importing node:crypto, +18–35 ms on a loaded
 * 2-core machine), and `-h` and `--ls` never sign, verify or hash. The one lazy loader for core's modules.
 */
export const nodeCrypto = (): typeof import("node:crypto") =>
  require("node:crypto") as typeof import("node:crypto");
