// Bun's collector runs as the JavaScript heap grows. A long stream handled chunk by chunk in JavaScript
// (a push of a large image hashed on its way) leaves each chunk's buffer behind, held outside that heap,
// so the collector learns of it late: a process's peak memory then grows with the transfer's size (the
// pushing CLI peaked at 100.7 MB for a 1 GB image, 57 MB before it). A full collection every few MB keeps
// it flat; the time floor bounds its cost on a fast stream.

export interface CollectorPacing {
  /** Bytes moved between two collections (default 8 MiB). */
  everyBytes?: number;
  /** Milliseconds between two collections at least (default 100). */
  minMs?: number;
  /** The collection (default a synchronous full Bun.gc). */
  collect?: () => void;
  /** Time in ms (default performance.now). */
  now?: () => number;
}

/** A counter of bytes a stream moved that runs a full collection every `everyBytes` (at most one per `minMs`). */
export function pacedCollector(o: CollectorPacing = {}): (bytes: number) => void {
  const everyBytes = o.everyBytes ?? 8 << 20;
  const minMs = o.minMs ?? 100;
  const collect = o.collect ?? (() => Bun.gc(true));
  const now = o.now ?? (() => performance.now());
  let moved = 0;
  let last = Number.NEGATIVE_INFINITY;
  return (bytes) => {
    moved += bytes;
    if (moved < everyBytes) return;
    const t = now();
    if (t - last < minMs) return;
    collect();
    last = now();
    moved = 0;
  };
}
