import { start } from "../../abstractions/index.ts";
import type { Command } from "../context.ts";
import { keepExecutableTrimmed } from "../pages.ts";

/** `--as-server` / `-s` / `--Server`: serves in the foreground until SIGINT/SIGTERM, then stops gracefully. */
export const serverCommand: Command = async ({ node, stopSignal }) => {
  const running = await start(node);
  // start-up's code pages go back once the node is up (pages.ts)
  const stopTrimming = keepExecutableTrimmed();
  await new Promise<void>((resolve) => {
    if (stopSignal.aborted) resolve();
    stopSignal.addEventListener("abort", () => resolve(), { once: true });
  });
  stopTrimming();
  await running.stop();
};
