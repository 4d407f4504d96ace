// An interactive exec over the engine's hijacked connection (`p2prc exec -i/-t`): the socket's reads
// become a back-pressured web stream, writes wait for the socket to drain.
import type { Duplex } from "node:stream";
import type { ExecSession } from "./types.ts";

/** What the session asks of the engine besides the socket. */
export interface ExecSessionCalls {
  resize(cols: number, rows: number): Promise<void>;
  /** The exec's state: `Running` and `ExitCode`, as the engine's inspect answers. */
  inspect(): Promise<{ Running?: unknown; ExitCode?: unknown }>;
}

/** Wraps the hijacked socket of a started exec (stdin attached). */
export function socketSession(socket: Duplex, calls: ExecSessionCalls): ExecSession {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    socket.destroy();
  };
  const output = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        let ended = false;
        const end = () => {
          if (ended) return;
          ended = true;
          try {
            controller.close();
          } catch {
            // already cancelled by the reader
          }
        };
        socket.on("data", (chunk: Buffer) => {
          if (ended) return;
          // a copy: the socket's buffer is reused
          controller.enqueue(new Uint8Array(chunk));
          if ((controller.desiredSize ?? 1) <= 0) socket.pause();
        });
        socket.on("end", end);
        socket.on("close", end);
        socket.on("error", end);
      },
      pull() {
        socket.resume();
      },
      cancel() {
        close();
      },
    },
    { highWaterMark: 4 },
  );
  return {
    output,
    write: (data) =>
      new Promise<void>((resolve) => {
        if (closed || socket.destroyed || socket.writableEnded) return resolve();
        if (socket.write(data)) resolve();
        else socket.once("drain", () => resolve());
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
