// Extracts a tar archive as it arrives (a task's outputs from its node): each file is written while its
// bytes come, so memory stays at a chunk whatever the output's size. Regular files and directories only;
// names come from the ustar header, a PAX `path` record or a GNU long name, and stay inside the target.
import { mkdirSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { dirname } from "node:path";
import { P2prcError } from "../../core/index.ts";
import { safeJoin } from "./safe-join.ts";

const BLOCK = 512;

/** Reads exactly `n` bytes at a time from a byte stream. */
class Reader {
  private buf: Uint8Array = new Uint8Array(0);
  private done = false;
  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  /** Up to `max` bytes (fewer only at the end); undefined at the end. */
  async chunk(max: number): Promise<Uint8Array | undefined> {
    if (this.buf.length === 0 && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else this.buf = r.value;
    }
    if (this.buf.length === 0) return undefined;
    const out = this.buf.subarray(0, max);
    this.buf = this.buf.subarray(out.length);
    return out;
  }

  /** Exactly `n` bytes, or undefined when the stream ends first. */
  async exact(n: number): Promise<Uint8Array | undefined> {
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const c = await this.chunk(n - at);
      if (!c) return undefined;
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

const text = (b: Uint8Array, from: number, len: number) => {
  const s = b.subarray(from, from + len);
  const end = s.indexOf(0);
  return new TextDecoder().decode(end === -1 ? s : s.subarray(0, end));
};
const octal = (b: Uint8Array, from: number, len: number) =>
  Number.parseInt(text(b, from, len).trim() || "0", 8);

/** The `path` record of a PAX extended header, if any. */
function paxPath(data: Uint8Array): string | undefined {
  const s = new TextDecoder().decode(data);
  let at = 0;
  while (at < s.length) {
    const sp = s.indexOf(" ", at);
    const len = Number.parseInt(s.slice(at, sp), 10);
    if (!(len > 0)) break;
    const rec = s.slice(sp + 1, at + len - 1);
    if (rec.startsWith("path=")) return rec.slice(5);
    at += len;
  }
  return undefined;
}

/**
 * Writes the archive's files under `root`; returns the files written. A name that would leave `root`
 * is skipped; a cut-off archive fails (what was written stays).
 */
export async function extractTar(stream: ReadableStream<Uint8Array>, root: string): Promise<string[]> {
  const it = (stream as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  const r = new Reader(it);
  const files: string[] = [];
  let longName: string | undefined;
  try {
    for (;;) {
      const h = await r.exact(BLOCK);
      if (!h || h.every((b) => b === 0)) break;
      const size = octal(h, 124, 12);
      const type = String.fromCharCode(h[156] ?? 0);
      const prefix = text(h, 345, 155);
      const name = longName ?? (prefix ? `${prefix}/${text(h, 0, 100)}` : text(h, 0, 100));
      longName = undefined;
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      if (type === "x" || type === "L") {
        const data = await r.exact(padded);
        if (!data) throw cut();
        longName = type === "L" ? text(data, 0, size) : paxPath(data.subarray(0, size));
        continue;
      }
      const target = safeJoin(root, name);
      let fh: FileHandle | undefined;
      if (target && type === "5") mkdirSync(target, { recursive: true });
      else if (target && (type === "0" || type === "\0")) {
        mkdirSync(dirname(target), { recursive: true });
        fh = await open(target, "w");
        files.push(target);
      }
      try {
        // small chunks are gathered into writes of up to 64 KiB (one system call each)
        let pending: Uint8Array[] = [];
        let pendingBytes = 0;
        const flush = async () => {
          if (fh && pendingBytes)
            await fh.write(pending.length === 1 ? (pending[0] as Uint8Array) : Buffer.concat(pending));
          pending = [];
          pendingBytes = 0;
        };
        let left = size;
        while (left > 0) {
          const c = await r.chunk(left);
          if (!c) throw cut();
          left -= c.length;
          if (!fh) continue;
          pending.push(c);
          pendingBytes += c.length;
          if (pendingBytes >= 65536) await flush();
        }
        await flush();
      } finally {
        await fh?.close();
      }
      if (padded > size && !(await r.exact(padded - size))) throw cut();
    }
  } finally {
    await it.return?.().catch(() => {});
  }
  return files;
}

const cut = () =>
  new P2prcError("E_NODE_UNREACHABLE", "the archive from the node was cut off", { retryable: true });
