// An interactive exec over the engine's hijacked connection (`p2prc exec -i/-t`): the socket's reads
// are the session's output (as a web stream, made by the caller), writes wait for the socket to drain.
import type { Duplex } from "node:stream";
import type { ExecSession } from "./types.ts";

/** What the session asks of the engine besides the socket. */
export interface ExecSessionCalls {
  resize(cols: number, rows: number): Promise<void>;
  /** The exec's state: `Running` and `ExitCode`, as the engine's inspect answers. */
  inspect(): Promise<{ Running?: unknown; ExitCode?: unknown }>;
}

/** Wraps the hijacked socket of a started exec (stdin attached); `output` is its reads as a web stream. */
export function socketSession(
  socket: Duplex,
  output: ReadableStream<Uint8Array>,
  calls: ExecSessionCalls,
): ExecSession {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    socket.destroy();
  };
  return {
    output,
    write: (data) =>
      new Promise<void>((resolve) => {
        if (closed || socket.destroyed || socket.writableEnded) return resolve();
        if (socket.write(data)) return resolve();
        // a socket closed while it waits (the session closed, or its machine lost) never drains
        const done = () => {
          socket.off("drain", done);
          socket.off("close", done);
          resolve();
        };
        socket.once("drain", done);
        socket.once("close", done);
      }),
    endInput: () => {
      if (!closed && !socket.writableEnded) socket.end();
    },
    resize: (cols, rows) => calls.resize(cols, rows),
    exitCode: async () => {
      const info = await calls.inspect();
      if (info.Running === true) return undefined;
      return typeof info.ExitCode === "number" ? info.ExitCode : undefined;
    },
    close,
  };
}
