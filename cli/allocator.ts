// The native allocator's setting for a node that runs for long (issue 12). Bun allocates its native
// memory (HTTP and TLS buffers, requests, strings handed to native code) with mimalloc (3.5), whose
// background thread ("mi-scavenger") gives memory back to the kernel: whole free pages 100 ms after
// they were freed, and the free blocks inside pages still in use ("holes") as often as every 100 ms
// (`purge_holes_min_interval`). A node's round frees and reuses the same blocks every second, so they
// were given back and faulted in again each round. With 100 nodes on 2 cores that thread was what grew
// with the network: 3.76–3.96 ms of a node-round's 11.8 ms at N = 100 against 1.10–1.40 ms at N = 10
// (bench/gossip's per-thread line), and ~20% of all CPU while 100 nodes started at once.
//
// Measured at N = 100 (bench/gossip P, one run each, 2026-11-30; CPU per node-round, every table full
// after all started at once, private memory):
//   mimalloc's defaults                        10.9–12.4 ms, 91–155 s (6 runs), 19.2–20.0 MB
//   MIMALLOC_PURGE_DELAY=10000                 11.9 ms, 108 s, 19.8 MB (the holes are not on that delay)
//   MIMALLOC_PURGE_HOLES=0                      9.1 ms,  50 s, 24.0 MB
//   MIMALLOC_PURGE_DELAY=-1 (never give back)   6.8 ms,  52 s, 24.6 MB
//   MIMALLOC_PURGE_HOLES_MIN_INTERVAL=10000     7.3 ms,  59 s, 20.0 MB   <- this
// So holes are given back at most every 10 s: a round's blocks stay while they are in use, and memory
// still goes back after a burst. mimalloc reads its options once, from the environment, as the process
// starts; so `p2prc --as-server` runs itself again at once with the setting, before anything else
// (execve: the same process id, nothing started twice).
import { flagSpellings } from "./flags.ts";

/** What a node sets: mimalloc's environment variables. */
export const NODE_ALLOCATOR_ENV: Readonly<Record<string, string>> = {
  MIMALLOC_PURGE_HOLES_MIN_INTERVAL: "10000",
};

/**
 * Whether `argv` (the command's arguments) runs a node in the foreground: the server action under any
 * spelling the CLI takes (flags.ts: `--as-server`, `--asServer`, `-s`, `--Server`, with or without a value).
 */
export function runsNode(argv: readonly string[]): boolean {
  const spellings = flagSpellings();
  return argv.some((a) => {
    const m = /^--?([^-=][^=]*)/.exec(a);
    return m !== null && spellings.get(m[1] as string) === "as-server";
  });
}

/**
 * Replaces this process with itself, the same arguments and the environment plus NODE_ALLOCATOR_ENV
 * (Linux only; not when a variable of it is set already, so it happens once, and a value the user set
 * is kept). Returns only when it did not: another platform, or execve failed (the node then runs with
 * mimalloc's default, as before).
 */
export async function execWithNodeAllocator(): Promise<void> {
  const names = Object.keys(NODE_ALLOCATOR_ENV);
  if (process.platform !== "linux" || names.some((k) => process.env[k] !== undefined)) return;
  // a compiled binary's argv[1] is its embedded entry (/$bunfs/…); run from source it is the script
  const compiled = (process.argv[1] ?? "").startsWith("/$bunfs/");
  const args = [process.execPath, ...process.argv.slice(compiled ? 2 : 1)];
  const env = Object.entries({ ...process.env, ...NODE_ALLOCATOR_ENV }).map(([k, v]) => `${k}=${v ?? ""}`);
  try {
    const { dlopen, FFIType, ptr } = await import("bun:ffi"); // loaded by a node's start only
    const libc = dlopen("libc.so.6", {
      execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    });
    const cstr = (s: string) => Buffer.from(`${s}\0`);
    const held: Buffer[] = []; // the strings stay referenced until execve has read them
    const table = (list: string[]) => {
      const t = new BigUint64Array(list.length + 1); // NULL-terminated
      list.forEach((s, i) => {
        const b = cstr(s);
        held.push(b);
        t[i] = BigInt(ptr(b));
      });
      return t;
    };
    const path = cstr(process.execPath);
    const argvTable = table(args);
    const envTable = table(env);
    libc.symbols.execve(ptr(path), ptr(argvTable), ptr(envTable));
    // execve returned: it failed. The buffers are used here, so none was collected before the call read it
    held.length = 0;
    libc.close();
  } catch {
    // no libc.so.6 (another C library) or no FFI: run with the default
  }
}
