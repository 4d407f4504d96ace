import { start } from "../../abstractions/index.ts";
import type { Command } from "../context.ts";

/** `--as-server` / `-s` / `--Server`: serves in the foreground until SIGINT/SIGTERM, then stops gracefully. */
export const serverCommand: Command = async ({ node, stopSignal }) => {
  const running = await start(node);
  await new Promise<void>((resolve) => {
    if (stopSignal.aborted) resolve();
    stopSignal.addEventListener("abort", () => resolve(), { once: true });
  });
  await running.stop();
};
