// The node's cache of batch inputs: files kept by the SHA-256 of their content, so an input shared by many
// tasks crosses the network once per node, not once per task. A member sees only what it uploaded itself
// (a digest proves nothing about having the bytes: no member learns what another one sent), while the
// bytes are kept once. Bounded by config `inputCacheMb`; the least recently used go first.
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { copyFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { type Logger, P2prcError } from "../../core/index.ts";

/** A SHA-256 in hex: what names an input. */
export const DIGEST = /^[0-9a-f]{64}$/;

/** The node's counters, as `GET /v1/inputs/stats` gives them. */
export interface InputCacheStats {
  /** Inputs held and their bytes, against the limit. */
  blobs: number;
  bytes: number;
  limitBytes: number;
  /** Bytes of uploads taken into the cache (checked against their digest). */
  bytesReceived: number;
  /** Bytes of inputs the cache gave to tasks (each task's inputs, counted per task). */
  bytesServed: number;
  /** Uploads refused because their content did not match their digest. */
  refused: number;
  evictions: number;
}

interface Entry {
  size: number;
  /** Members that uploaded it (in memory: after a restart each uploads it once more). */
  owners: Set<string>;
  /** Tasks copying it into a container now: not evicted meanwhile. */
  pins: number;
}

export interface InputCacheOptions {
  dir: string;
  limitBytes: number;
  logger: Logger;
}

/** A file written while its SHA-256 was computed (server/http/body.ts's SpooledBody). */
export interface SpooledFile {
  file: string;
  bytes: number;
  sha256: string;
}

/** A content-addressed, size-bounded store of batch inputs on the node's disk. */
export class InputCache {
  /** In least-recently-used order: a use moves an entry to the end. */
  private readonly entries = new Map<string, Entry>();
  private total = 0;
  private readonly counters = { bytesReceived: 0, bytesServed: 0, refused: 0, evictions: 0 };
  private readonly log: Logger;

  private opened = false;

  constructor(private readonly o: InputCacheOptions) {
    this.log = o.logger.withTag("inputs");
  }

  /** Reads the directory on first use (a node that never runs a batch never touches it). */
  private open(): void {
    if (this.opened) return;
    this.opened = true;
    const o = this.o;
    mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    // what an earlier run kept, oldest first; anything else there (a copy cut off by a crash) goes
    const found: { digest: string; size: number; mtime: number }[] = [];
    for (const name of readdirSync(o.dir)) {
      const path = join(o.dir, name);
      const st = statSync(path, { throwIfNoEntry: false });
      if (DIGEST.test(name) && st?.isFile()) found.push({ digest: name, size: st.size, mtime: st.mtimeMs });
      else rmSync(path, { recursive: true, force: true });
    }
    for (const f of found.sort((a, b) => a.mtime - b.mtime)) {
      this.entries.set(f.digest, { size: f.size, owners: new Set(), pins: 0 });
      this.total += f.size;
    }
    this.evict();
  }

  /** The digests among `digests` that `owner` has not uploaded (or that were evicted since). */
  missing(owner: string, digests: string[]): string[] {
    this.open();
    return digests.filter((d) => !this.entries.get(d)?.owners.has(owner));
  }

  /**
   * Takes a spooled upload in as `digest` for `owner`; the spooled file is moved (or, when the content is
   * there already, left for the caller to remove). Refused, and nothing kept, when its content's SHA-256
   * is not `digest` or it is larger than the whole cache.
   */
  async add(owner: string, digest: string, upload: SpooledFile): Promise<{ bytes: number; stored: boolean }> {
    this.open();
    if (upload.sha256 !== digest) {
      this.counters.refused++;
      throw new P2prcError(
        "E_INVALID",
        `body: its SHA-256 is ${upload.sha256}, not the digest ${digest} it was sent as (corrupted?); nothing was kept`,
        { field: "body" },
      );
    }
    if (upload.bytes > this.o.limitBytes) {
      throw new P2prcError(
        "E_TOO_LARGE",
        `input of ${upload.bytes} bytes is larger than this node's input cache (inputCacheMb=${Math.floor(this.o.limitBytes / 1048576)})`,
        { field: "body" },
      );
    }
    this.counters.bytesReceived += upload.bytes;
    const have = this.entries.get(digest);
    if (have) {
      have.owners.add(owner);
      this.touch(digest, have);
      return { bytes: upload.bytes, stored: false };
    }
    const path = join(this.o.dir, digest);
    try {
      renameSync(upload.file, path);
    } catch {
      // another file system: copied under a temporary name, so a cut-off copy never carries the digest
      const tmp = `${path}.part`;
      await copyFile(upload.file, tmp);
      renameSync(tmp, path);
      await rm(upload.file, { force: true });
    }
    this.entries.set(digest, { size: upload.bytes, owners: new Set([owner]), pins: 0 });
    this.total += upload.bytes;
    this.evict(digest);
    return { bytes: upload.bytes, stored: true };
  }

  /**
   * Pins the inputs an owner's task uses (their files stay until `release`), or E_NOT_FOUND on field
   * `inputs` naming those the owner must upload (again). Counts their bytes as served.
   */
  use(
    owner: string,
    digests: string[],
  ): { files: Map<string, { path: string; size: number }>; release: () => void } {
    const lacking = this.missing(owner, digests);
    if (lacking.length) {
      throw new P2prcError(
        "E_NOT_FOUND",
        `inputs not in this node's cache (upload them first): ${lacking.join(", ")}`,
        { field: "inputs" },
      );
    }
    const files = new Map<string, { path: string; size: number }>();
    const pinned: Entry[] = [];
    for (const d of new Set(digests)) {
      const e = this.entries.get(d) as Entry;
      e.pins++;
      pinned.push(e);
      this.touch(d, e);
      files.set(d, { path: join(this.o.dir, d), size: e.size });
    }
    for (const d of digests) this.counters.bytesServed += this.entries.get(d)?.size ?? 0;
    let released = false;
    return {
      files,
      release: () => {
        if (released) return;
        released = true;
        for (const e of pinned) e.pins--;
        this.evict();
      },
    };
  }

  stats(): InputCacheStats {
    this.open();
    return { blobs: this.entries.size, bytes: this.total, limitBytes: this.o.limitBytes, ...this.counters };
  }

  private touch(digest: string, e: Entry): void {
    this.entries.delete(digest);
    this.entries.set(digest, e);
  }

  /** Drops the least recently used inputs (never a pinned one, nor `keep`) until the cache fits its limit. */
  private evict(keep?: string): void {
    if (this.total <= this.o.limitBytes) return;
    for (const [digest, e] of this.entries) {
      if (this.total <= this.o.limitBytes) break;
      if (e.pins > 0 || digest === keep) continue;
      this.entries.delete(digest);
      this.total -= e.size;
      this.counters.evictions++;
      rmSync(join(this.o.dir, digest), { force: true });
      this.log.debug(`evicted input ${digest.slice(0, 12)} (${e.size} bytes)`);
    }
  }
}
