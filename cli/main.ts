#!/usr/bin/env bun
// Entry point of the `p2prc` binary.
import { runCli } from "./run.ts";

const controller = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  });
}
const code = await runCli(process.argv.slice(2), { stopSignal: controller.signal });
process.exit(code);
