// The engine's multiplexed stream format (logs and exec of a container without a TTY), read with
// bounded memory. Each frame is an 8-byte header — stream type (0 stdin, 1 stdout, 2 stderr), three zero
// bytes, a big-endian uint32 payload length — then the payload. docker-modem's demuxer, fed a whole log
// in one buffer, copies the rest of the buffer for every frame (quadratic; a 1 MB log took > 1.5 GB);
// this one only keeps a partial header and hands payloads on as slices of the chunks it is given.
// The server reads the engine's streams with it; the client reads an interactive exec's output
// without a TTY (`p2prc exec -i`), which the node passes on in the same frames.

import { P2prcError } from "./errors.ts";

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
