#!/usr/bin/env bun
// Entry point of the `p2prc` binary. Help and version answer before anything else loads, and every
// other command loads only what it uses, so the binary starts fast.
import "./warnings.ts";
import { execWithNodeAllocator, runsNode } from "./allocator.ts";

const argv = process.argv.slice(2);
if (
  argv.length === 0 ||
  (argv.length === 1 && ["-h", "--help", "-v", "--version"].includes(argv[0] as string))
) {
  const { renderHelp, VERSION } = await import("./help.ts");
  process.stdout.write(`${argv[0] === "-v" || argv[0] === "--version" ? VERSION : renderHelp()}\n`);
  process.exit(0);
}
// a node runs itself again at once with its allocator setting (see allocator.ts); returns when it did not
if (runsNode(argv)) await execWithNodeAllocator();
const controller = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  });
}
const { runCli } = await import("./run.ts");
const code = await runCli(argv, { stopSignal: controller.signal });
process.exit(code);
