// The engine's multiplexed stream format (logs and exec of a container without a TTY), read with
// bounded memory. Each frame is an 8-byte header — stream type (0 stdin, 1 stdout, 2 stderr), three zero
// bytes, a big-endian uint32 payload length — then the payload. docker-modem's demuxer, fed a whole log
// in one buffer, copies the rest of the buffer for every frame (quadratic; a 1 MB log took > 1.5 GB);
// this one only keeps a partial header and hands payloads on as slices of the chunks it is given.

import { P2prcError } from "../../core/index.ts";

const HEADER = 8;

/** A piece of one frame's payload: `stream` 1 is stdout, 2 stderr. */
export interface FramePiece {
  stream: number;
  data: Uint8Array;
}

/** Splits multiplexed chunks into payload slices; throws E_ENGINE on a header that is not a frame. */
export class FrameDemuxer {
  private readonly header = new Uint8Array(HEADER);
  private headerFill = 0;
  private remaining = 0;
  private stream = 1;

  /** The payload bytes in `chunk`, in order, as slices of it (no copy). */
  push(chunk: Uint8Array): FramePiece[] {
    const out: FramePiece[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - at);
        out.push({ stream: this.stream, data: chunk.subarray(at, at + take) });
        this.remaining -= take;
        at += take;
        continue;
      }
      const take = Math.min(HEADER - this.headerFill, chunk.length - at);
      this.header.set(chunk.subarray(at, at + take), this.headerFill);
      this.headerFill += take;
      at += take;
      if (this.headerFill < HEADER) break;
      this.headerFill = 0;
      const h = this.header;
      if ((h[0] ?? 9) > 2 || h[1] !== 0 || h[2] !== 0 || h[3] !== 0) {
        throw new P2prcError(
          "E_ENGINE",
          "the container engine sent output p2prc cannot read (not in the engine's stream format)",
          {
            retryable: true,
          },
        );
      }
      this.stream = h[0] ?? 1;
      this.remaining = new DataView(h.buffer, h.byteOffset, HEADER).getUint32(4);
    }
    return out;
  }

  /** True when the input ended inside a frame (the engine's stream was cut). */
  get partial(): boolean {
    return this.headerFill > 0 || this.remaining > 0;
  }
}

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
