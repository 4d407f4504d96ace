// The executable's code pages a node no longer runs (issue 12). The compiled p2prc is one ~130 MB file
// (Bun, its libraries and the bundle); starting a node runs code from ~33 MB of its text (the module
// loader, bytecode loading, SQLite's migrations, TLS and key generation, the CLI's parsing), and those
// pages stay mapped, counted in the node's RSS, long after start-up: a node alone was 16 MB of private
// memory and ~48 MB of the executable. Once the node is up, this hands the text's pages back to the page
// cache (madvise MADV_DONTNEED on the executable's read-only, executable mappings): what a round runs
// is faulted in again from the page cache at its next use (a minor fault, no disk), what only start-up
// ran stays out.
//
// Only mappings of the executable file that are executable and hold no page of their own (smaps'
// `Anonymous: 0 kB`: no page was ever written, as text never is) are given back; MADV_DONTNEED on a
// private page that was written would drop what was written. Linux only; elsewhere, or without libc's
// madvise, nothing happens.
import { readFileSync, realpathSync } from "node:fs";

const MADV_DONTNEED = 4;

/** A mapping of the executable that may be given back: its start, its length in bytes. */
export interface TextMapping {
  start: bigint;
  length: number;
}

/**
 * The executable's mappings in `smaps` (/proc/self/smaps' text) that may be given back: `exe`'s
 * mappings with permissions r-xp and no anonymous page.
 */
export function executableText(smaps: string, exe: string): TextMapping[] {
  const out: TextMapping[] = [];
  let current: (TextMapping & { anonymousKb: number }) | undefined;
  const done = () => {
    if (current && current.anonymousKb === 0) out.push({ start: current.start, length: current.length });
    current = undefined;
  };
  for (const line of smaps.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      done();
      const [, from, to, perms, path] = head as unknown as [string, string, string, string, string];
      if (perms === "r-xp" && path === exe) {
        const start = BigInt(`0x${from}`);
        current = { start, length: Number(BigInt(`0x${to}`) - start), anonymousKb: -1 };
      }
      continue;
    }
    const anon = /^Anonymous:\s+(\d+) kB/.exec(line);
    if (anon && current) current.anonymousKb = Number(anon[1]);
  }
  done();
  return out;
}

/**
 * Gives the executable's text pages back (see the top). Returns the bytes of the mappings advised, 0
 * when there was nothing to do or it could not be done.
 */
export async function trimExecutableText(): Promise<number> {
  if (process.platform !== "linux") return 0;
  try {
    const exe = realpathSync("/proc/self/exe");
    const mappings = executableText(readFileSync("/proc/self/smaps", "utf8"), exe);
    if (mappings.length === 0) return 0;
    const { dlopen, FFIType } = await import("bun:ffi");
    const libc = dlopen("libc.so.6", {
      madvise: { args: [FFIType.u64, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
    });
    let bytes = 0;
    for (const m of mappings)
      if (libc.symbols.madvise(m.start, BigInt(m.length), MADV_DONTNEED) === 0) bytes += m.length;
    libc.close();
    return bytes;
  } catch {
    return 0; // no libc.so.6 or no FFI: the pages stay
  }
}

/**
 * When a node gives its text back: TRIM_FIRST_MS after it is up (its first rounds run), then at twice
 * the last wait (20 s, 40 s, …: a network's discovery, which runs code of its own, is over within
 * minutes), at most every TRIM_EVERY_MS (code run once since, an upload or a job, goes back too).
 */
export const TRIM_FIRST_MS = 10_000;
export const TRIM_EVERY_MS = 600_000;

/**
 * Gives the executable's text back on the schedule above; each trim costs the pages a round runs a
 * fault again (a few thousand minor faults). The timer does not hold the process; the function
 * returned stops it.
 */
export function keepExecutableTrimmed(
  o: { firstMs?: number; everyMs?: number; trim?: () => Promise<number> } = {},
): () => void {
  const trim = o.trim ?? trimExecutableText;
  const every = o.everyMs ?? TRIM_EVERY_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const after = (ms: number) => {
    timer = setTimeout(() => {
      void trim();
      after(Math.min(every, 2 * ms));
    }, ms);
    timer.unref();
  };
  after(o.firstMs ?? TRIM_FIRST_MS);
  return () => clearTimeout(timer);
}
