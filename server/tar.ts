// A minimal ustar writer for the few small files the server places into containers itself
// (authorized_keys). Uploads from clients are passed to the engine untouched.

/** One entry: a directory (no content) or a regular file. */
export interface TarEntry {
  path: string;
  mode: number;
  content?: string | Uint8Array;
  uid?: number;
  gid?: number;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

function header(entry: TarEntry, size: number, dir: boolean): Uint8Array {
  const block = new Uint8Array(512);
  const enc = new TextEncoder();
  const name = dir && !entry.path.endsWith("/") ? `${entry.path}/` : entry.path;
  if (name.length > 100) throw new Error(`tar path too long: ${name}`);
  const put = (text: string, offset: number) => block.set(enc.encode(text), offset);
  put(name, 0);
  put(octal(entry.mode, 8), 100);
  put(octal(entry.uid ?? 0, 8), 108);
  put(octal(entry.gid ?? 0, 8), 116);
  put(octal(size, 12), 124);
  put(octal(Math.floor(Date.now() / 1000), 12), 136);
  put("        ", 148); // checksum placeholder
  put(dir ? "5" : "0", 156);
  put("ustar\0", 257);
  put("00", 263);
  let sum = 0;
  for (const b of block) sum += b;
  put(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  return block;
}

/** Builds a tar archive (ustar) of the entries, in order. */
export function createTar(entries: TarEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    const dir = entry.content === undefined;
    const data =
      typeof entry.content === "string"
        ? new TextEncoder().encode(entry.content)
        : (entry.content ?? new Uint8Array());
    parts.push(header(entry, data.length, dir));
    if (data.length > 0) {
      parts.push(data);
      const pad = (512 - (data.length % 512)) % 512;
      if (pad) parts.push(new Uint8Array(pad));
    }
  }
  parts.push(new Uint8Array(1024));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
