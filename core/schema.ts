import type * as z from "./zod.ts";

/** The zod/mini namespace as core/zod.ts sets it up. */
export type Z = typeof z;

let zodNs: Z | undefined;
/**
 * zod/mini as core/zod.ts sets it up, loaded on first call: loading it and building a first schema costs
 * ~1 ms, which a command whose config holds only defaults (the common case) does not need to pay.
 */
export function zod(): Z {
  zodNs ??= require("./zod.ts") as Z;
  return zodNs;
}
