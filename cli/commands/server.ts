import { P2prcError } from "../../config/index.ts";
import type { Command } from "../context.ts";

/** `--as-server` / `-s`: filled in by the server issue. */
export const serverCommand: Command = async () => {
  throw new P2prcError("E_NOT_AVAILABLE", "--as-server is not available yet (it comes with server mode)");
};
