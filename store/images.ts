import type BetterSqlite3 from "better-sqlite3";
import { lazyStatements } from "./lazy.ts";

/** An image a member pushed to this node (`p2prc image push`): who pushed it and what it costs them. */
export interface PushedImageRow {
  /** The reference it was pushed as (`name:tag`). */
  ref: string;
  /** The engine's image id (`sha256:…`, the digest of its config). */
  imageId: string;
  /** The pusher's node id: it counts against their quota, and they (or an admin) may remove it. */
  owner: string;
  /** Size of the archive pushed, in bytes (what the quota counts). */
  bytes: number;
  pushedAt: number;
}

/** The images members pushed to this node, as domain verbs. */
export interface ImageStore {
  list(): PushedImageRow[];
  get(ref: string): PushedImageRow | undefined;
  /** Inserts or replaces the image pushed as `ref` (a push again of one ref moves it to its new pusher). */
  put(row: PushedImageRow): void;
  remove(ref: string): boolean;
  /** Bytes `owner` holds in pushed images. */
  bytesOf(owner: string): number;
}

interface Row {
  ref: string;
  image_id: string;
  owner: string;
  bytes: number;
  pushed_at: number;
}

const toRow = ({ image_id, pushed_at, ...same }: Row): PushedImageRow => ({
  ...same,
  imageId: image_id,
  pushedAt: pushed_at,
});

export function imageStore(db: BetterSqlite3.Database): ImageStore {
  const q = lazyStatements({
    list: () => db.prepare<[], Row>("SELECT * FROM pushed_images ORDER BY ref"),
    get: () => db.prepare<[string], Row>("SELECT * FROM pushed_images WHERE ref = ?"),
    put: () =>
      db.prepare<[string, string, string, number, number]>(
        `INSERT INTO pushed_images (ref, image_id, owner, bytes, pushed_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (ref) DO UPDATE SET image_id = excluded.image_id, owner = excluded.owner,
         bytes = excluded.bytes, pushed_at = excluded.pushed_at`,
      ),
    remove: () => db.prepare<[string]>("DELETE FROM pushed_images WHERE ref = ?"),
    bytesOf: () =>
      db.prepare<[string], { n: number }>(
        "SELECT COALESCE(SUM(bytes), 0) AS n FROM pushed_images WHERE owner = ?",
      ),
  });
  return {
    list: () => q.list.all().map(toRow),
    get: (ref) => {
      const r = q.get.get(ref);
      return r ? toRow(r) : undefined;
    },
    put: (r) => {
      q.put.run(r.ref, r.imageId, r.owner, r.bytes, r.pushedAt);
    },
    remove: (ref) => q.remove.run(ref).changes > 0,
    bytesOf: (owner) => q.bytesOf.get(owner)?.n ?? 0,
  };
}
