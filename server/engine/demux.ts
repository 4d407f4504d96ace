// The engine's multiplexed stream as a pull-based web stream of its payloads (FrameDemuxer, in
// core/frames.ts, reads the frames).

import { FrameDemuxer, P2prcError } from "../../core/index.ts";

export { FrameDemuxer } from "../../core/index.ts";

export interface DemuxStreamOptions {
  /** Stop after this many payload bytes (the stream then ends; the engine's stream is closed). */
  maxBytes?: number | undefined;
  /** Fail the stream when the engine sends nothing for this long (not for follow). */
  idleMs?: number | undefined;
  /** Called once when the stream ends, fails or is cancelled: close the engine's stream here. */
  close: () => void;
}

/**
 * A pull-based web stream of the payloads of `chunks` (an engine stream's async iterator): one engine
 * chunk is read only when the HTTP side asks for more, so memory stays at a chunk or two whatever the
 * size of the log and however slowly the client reads.
 */
export function demuxToWeb(
  chunks: AsyncIterator<Uint8Array>,
  options: DemuxStreamOptions,
): ReadableStream<Uint8Array> {
  const demux = new FrameDemuxer();
  let sent = 0;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    options.close();
  };
  const next = (): Promise<IteratorResult<Uint8Array>> => {
    if (!options.idleMs) return chunks.next();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new P2prcError(
              "E_ENGINE_UNAVAILABLE",
              `the container engine sent nothing for ${options.idleMs} ms`,
              {
                retryable: true,
              },
            ),
          ),
        options.idleMs,
      );
    });
    return Promise.race([chunks.next(), idle]).finally(() => clearTimeout(timer));
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          for (;;) {
            const { value, done } = await next();
            if (done) {
              close();
              controller.close();
              return;
            }
            let pieces = demux.push(value).map((p) => p.data);
            if (pieces.length === 0) continue;
            if (options.maxBytes !== undefined) {
              const kept: Uint8Array[] = [];
              for (const p of pieces) {
                const room = options.maxBytes - sent;
                if (room <= 0) break;
                kept.push(p.length > room ? p.subarray(0, room) : p);
                sent += Math.min(p.length, room);
              }
              pieces = kept;
            }
            // Copies: the chunk's memory belongs to the socket, and a slice would keep all of it alive.
            for (const p of pieces) controller.enqueue(new Uint8Array(p));
            if (options.maxBytes !== undefined && sent >= options.maxBytes) {
              close();
              controller.close();
            }
            return;
          }
        } catch (err) {
          close();
          controller.error(err);
        }
      },
      cancel() {
        close();
      },
    },
    { highWaterMark: 0 },
  );
}
