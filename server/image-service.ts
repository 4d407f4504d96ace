import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/index.ts";
import { type Clock, type Logger, P2prcError } from "../core/index.ts";
import type { ImageStore, PushedImageRow } from "../store/index.ts";
import type { Caller } from "./caller.ts";
import type { ContainerEngine } from "./engine/index.ts";
import { type SpooledBody, spoolBody } from "./http/body.ts";
import { archiveTags } from "./image-archive.ts";
import { imageAllowed, normalizeImageRef, parseImageRef } from "./images.ts";

/** A member node that has an image this node lacks: what it says the image is, and how to get it. */
export interface ImageSource {
  /** Who serves it (a node id), for the log. */
  from: string;
  /** The image's id on that node (`sha256:…`, the digest of its config): checked after the load. */
  id: string;
  /** Its size there (the engine's), a hint for the quota before anything is sent. */
  sizeBytes: number;
  /** Its archive (`docker save`), streamed. */
  open(): Promise<ReadableStream<Uint8Array>>;
}

/** Members that have `ref`, closest first (the composition root asks the IP table's members). */
export type ImageSources = (ref: string, callerId: string) => Promise<ImageSource[]>;

export interface ImageServiceDeps {
  config: Config;
  engine: ContainerEngine;
  /** Pushed images: who pushed them and their size. */
  images: ImageStore;
  clock: Clock;
  logger: Logger;
  /** Archives are spooled under `<dataDir>/images` while their digest is checked. */
  dataDir: string;
  /** Where an image no registry has is looked for among members (node to node). */
  sources?: ImageSources | undefined;
}

/** A pushed image as `image ls` shows it. */
export interface PushedImageView {
  image: string;
  id: string;
  owner: string;
  bytes: number;
  pushedAt: string;
}

/** What a finished push answers. */
export interface PushResult {
  image: string;
  id: string;
  bytes: number;
}

interface PendingUpload {
  id: string;
  owner: string;
  image: string;
  body: SpooledBody;
  expiresAt: number;
}

/** An upload not committed within this time is removed (a client that died between its two requests). */
const PENDING_TTL_MS = 10 * 60_000;
/** Pushes one member may have spooled and not committed at once. */
const PENDING_PER_MEMBER = 2;
/** Largest archive the node's own key may push or a fetch may bring (no quota applies to it). */
const MAX_ARCHIVE_BYTES = 64 * 1024 ** 3;

const view = (r: PushedImageRow): PushedImageView => ({
  image: r.ref,
  id: r.imageId,
  owner: r.owner,
  bytes: r.bytes,
  pushedAt: new Date(r.pushedAt).toISOString(),
});

/**
 * Images members push to this node (`p2prc image push`), images it serves to members, and images it
 * fetches from members when no registry has one. A push is two signed requests: the archive, streamed to
 * a spool file while hashed (its signature cannot cover a body whose digest is known only at its end),
 * then its SHA-256 and size, signed; only a match is loaded. The pusher's quota, the image allowlist and
 * `imagePushes` are checked before a byte is read, and nothing is left behind when any check fails.
 */
export class ImageService {
  private readonly log: Logger;
  private readonly pending = new Map<string, PendingUpload>();
  /** Fetches from members in progress, by image: concurrent creates of one missing image share one. */
  private readonly fetching = new Map<string, Promise<boolean>>();
  readonly spoolDir: string;
  /** Sweeps uncommitted uploads once a minute (unref'd: it never keeps a process alive). */
  private readonly sweeper: ReturnType<typeof setInterval>;

  constructor(private readonly deps: ImageServiceDeps) {
    this.log = deps.logger.withTag("images");
    this.spoolDir = join(deps.dataDir, "images");
    // archives a stopped node was spooling are of no use now
    rmSync(this.spoolDir, { recursive: true, force: true });
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  private quotaBytes(): number {
    return this.deps.config.memberImageQuotaMb * 1024 * 1024;
  }

  /** Bytes `caller` may still bring here, `replacing` the image it pushed as that ref (its bytes freed). */
  private room(caller: Caller, replacing: string): number {
    if (caller.operator) return MAX_ARCHIVE_BYTES;
    const row = this.deps.images.get(replacing);
    const used = this.deps.images.bytesOf(caller.id) - (row?.owner === caller.id ? row.bytes : 0);
    return Math.max(0, this.quotaBytes() - used);
  }

  private overQuota(image: string, bytes: number | undefined): P2prcError {
    const mb = this.deps.config.memberImageQuotaMb;
    return new P2prcError(
      "E_TOO_LARGE",
      `image ${image}${bytes === undefined ? "" : ` (${bytes} bytes)`} would take this caller over its quota memberImageQuotaMb=${mb} on this node; remove an image it pushed (p2prc image rm) first`,
      { field: "memberImageQuotaMb" },
    );
  }

  /** The checks before a push reads anything: the switch, the reference, the allowlist, whose tag it is. */
  private async checkPush(caller: Caller, raw: string): Promise<string> {
    const { config, engine, images } = this.deps;
    if (!config.imagePushes && !caller.operator)
      throw new P2prcError("E_FORBIDDEN", "this node does not take pushed images (imagePushes=false)", {
        field: "imagePushes",
      });
    const parsed = parseImageRef(raw);
    if (typeof parsed === "string" || parsed.digest)
      throw new P2prcError(
        "E_INVALID",
        `image: not a name:tag reference (${typeof parsed === "string" ? parsed : "a digest cannot be pushed"})`,
        { field: "image" },
      );
    const image = normalizeImageRef(raw);
    if (!imageAllowed(config.allowedImages, image))
      throw new P2prcError(
        "E_FORBIDDEN",
        `image ${image} is not offered by this node (allowedImages: ${config.allowedImages.join(", ")})`,
        { field: "image" },
      );
    // A member may not re-tag an image it did not push: the node's default image, another member's.
    const row = images.get(image);
    if (!caller.admin && row?.owner !== caller.id && (await engine.inspectImage(image)))
      throw new P2prcError(
        "E_CONFLICT",
        `image ${image} is already on this node and was not pushed by this caller; push it under another name`,
        { field: "image" },
      );
    return image;
  }

  /**
   * The first request of a push: the archive (`docker save` of `raw`), spooled and hashed. `sizeHint`,
   * when the client knows about how big it is, refuses an over-quota push before the transfer.
   */
  async receive(
    caller: Caller,
    raw: string,
    req: Request,
    sizeHint?: number,
  ): Promise<{ upload: string; bytes: number }> {
    this.sweep();
    const image = await this.checkPush(caller, raw);
    const room = this.room(caller, image);
    if (sizeHint !== undefined && sizeHint > room) throw this.overQuota(image, sizeHint);
    const mine = [...this.pending.values()].filter((p) => p.owner === caller.id).length;
    if (!caller.operator && mine >= PENDING_PER_MEMBER)
      throw new P2prcError("E_RATE_LIMIT", `at most ${PENDING_PER_MEMBER} pushes at once per member`, {
        retryable: true,
      });
    let body: SpooledBody;
    try {
      body = await spoolBody(req, this.spoolDir, room);
    } catch (err) {
      if (err instanceof P2prcError && err.code === "E_TOO_LARGE") throw this.overQuota(image, undefined);
      throw err;
    }
    const id = randomBytes(12).toString("hex");
    this.pending.set(id, {
      id,
      owner: caller.id,
      image,
      body,
      expiresAt: this.deps.clock.now() + PENDING_TTL_MS,
    });
    this.log.debug(`push ${id} of ${image} by ${caller.id.slice(0, 12)}: ${body.bytes} bytes spooled`);
    return { upload: id, bytes: body.bytes };
  }

  /**
   * The second request: the archive's SHA-256 and size as the pusher computed them. A mismatch (the
   * archive was corrupted or cut in transit) loads nothing; a match is checked for its tags, loaded,
   * and counted against the pusher. The spool file is removed either way.
   */
  async commit(
    caller: Caller,
    uploadId: string,
    claim: { sha256: string; bytes: number },
  ): Promise<PushResult> {
    const p = this.pending.get(uploadId);
    if (!p || p.owner !== caller.id)
      throw new P2prcError("E_NOT_FOUND", `no push ${uploadId} of this caller (expired?); push again`, {
        field: "upload",
      });
    this.pending.delete(uploadId);
    try {
      if (p.body.bytes !== claim.bytes || p.body.sha256 !== claim.sha256.toLowerCase())
        throw new P2prcError(
          "E_INVALID",
          `sha256: the archive received (${p.body.bytes} bytes) does not match the one sent (${claim.bytes} bytes, sha256 ${claim.sha256.slice(0, 12)}…): corrupted or truncated in transit; nothing was loaded, push again`,
          { field: "sha256", retryable: true },
        );
      const id = await this.load(p.image, p.body.file);
      const now = this.deps.clock.now();
      this.deps.images.put({
        ref: p.image,
        imageId: id,
        owner: caller.id,
        bytes: p.body.bytes,
        pushedAt: now,
      });
      this.log.info(
        `${p.image} (${id.slice(7, 19)}) pushed by ${caller.id.slice(0, 12)}, ${p.body.bytes} bytes`,
      );
      return { image: p.image, id, bytes: p.body.bytes };
    } finally {
      await p.body.remove();
    }
  }

  /**
   * Loads a checked archive of `image`: it must tag that image and nothing else (else E_INVALID, nothing
   * loaded); the image's id after the load. `expectId`: the id the archive must produce (node to node).
   */
  private async load(image: string, file: string, expectId?: string): Promise<string> {
    const { engine } = this.deps;
    const tags = await archiveTags(file);
    const others = tags.filter((t) => normalizeImageRef(t) !== image);
    if (tags.length === 0 || others.length > 0)
      throw new P2prcError(
        "E_INVALID",
        `body: the archive must tag ${image} alone (it tags ${tags.join(", ") || "nothing"}); save it by that name`,
        { field: "body" },
      );
    const before = (await engine.inspectImage(image))?.id;
    await engine.loadImage(Bun.file(file));
    const after = await engine.inspectImage(image);
    if (!after)
      throw new P2prcError("E_INVALID", `body: the archive did not hold ${image}`, { field: "body" });
    if (expectId && after.id !== expectId) {
      // the tag now names what was loaded: put it back out of use
      if (after.id !== before) await engine.removeImage(image).catch(() => undefined);
      throw new P2prcError(
        "E_INVALID",
        `image ${image}: the archive loaded as ${after.id.slice(0, 19)}, not the ${expectId.slice(0, 19)} announced; removed`,
        { field: "image" },
      );
    }
    return after.id;
  }

  /** Every image members pushed here, with its pusher. */
  list(): PushedImageView[] {
    return this.deps.images.list().map(view);
  }

  /** Removes a pushed image: its pusher or an admin. E_CONFLICT while a container uses it. */
  async remove(caller: Caller, raw: string): Promise<PushedImageView> {
    const image = normalizeImageRef(raw);
    const row = this.deps.images.get(image);
    if (!row)
      throw new P2prcError("E_NOT_FOUND", `no pushed image ${image} on this node`, { field: "image" });
    if (row.owner !== caller.id && !caller.admin)
      throw new P2prcError("E_FORBIDDEN", `image ${image} was pushed by another member`, { field: "image" });
    await this.deps.engine.removeImage(image);
    this.deps.images.remove(image);
    this.log.info(`${image} removed by ${caller.id.slice(0, 12)}`);
    return view(row);
  }

  /**
   * An image this node has, streamed to a member (node to node): only images it offers (allowedImages,
   * as GET /v1/images lists them), and not while imagePushes is off.
   */
  async archive(raw: string): Promise<{ id: string; stream: ReadableStream<Uint8Array> }> {
    const { config, engine } = this.deps;
    if (!config.imagePushes)
      throw new P2prcError("E_FORBIDDEN", "this node does not share images (imagePushes=false)", {
        field: "imagePushes",
      });
    const image = normalizeImageRef(raw);
    const info = imageAllowed(config.allowedImages, image) ? await engine.inspectImage(image) : undefined;
    if (!info) throw new P2prcError("E_NOT_FOUND", `image ${image} is not on this node`, { field: "image" });
    return { id: info.id, stream: await engine.saveImage(image) };
  }

  /**
   * Brings `raw` from a member that has it (no registry did): sources closest first, each archive
   * spooled, its tags checked, loaded, and its id checked against the one the source announced (the
   * engine checks every layer against the config that id is the digest of). Counts against `caller`.
   * False when no member has it or none could deliver.
   */
  fetchFromMembers(raw: string, caller: Caller): Promise<boolean> {
    const image = normalizeImageRef(raw);
    let pending = this.fetching.get(image);
    if (!pending) {
      pending = this.fetchOnce(image, caller).finally(() => this.fetching.delete(image));
      this.fetching.set(image, pending);
    }
    return pending;
  }

  private async fetchOnce(image: string, caller: Caller): Promise<boolean> {
    const { sources } = this.deps;
    if (!sources || !this.deps.config.imagePushes) return false;
    const found = await sources(image, caller.id).catch((err: unknown) => {
      this.log.warn(`looking for ${image} among members: ${(err as Error).message}`);
      return [];
    });
    const room = this.room(caller, image);
    for (const s of found) {
      if (s.sizeBytes > room) throw this.overQuota(image, s.sizeBytes);
      let body: SpooledBody | undefined;
      try {
        const stream = await s.open();
        body = await spoolBody(
          new Request("http://node/", { method: "POST", body: stream }),
          this.spoolDir,
          room,
        );
        const id = await this.load(image, body.file, s.id);
        this.deps.images.put({
          ref: image,
          imageId: id,
          owner: caller.id,
          bytes: body.bytes,
          pushedAt: this.deps.clock.now(),
        });
        this.log.info(
          `${image} (${id.slice(7, 19)}) fetched from ${s.from.slice(0, 12)}, ${body.bytes} bytes`,
        );
        return true;
      } catch (err) {
        if (err instanceof P2prcError && err.code === "E_TOO_LARGE") throw this.overQuota(image, undefined);
        this.log.warn(`fetching ${image} from ${s.from.slice(0, 12)}: ${(err as Error).message}`);
      } finally {
        await body?.remove();
      }
    }
    return false;
  }

  /** Removes uploads never committed. */
  sweep(): void {
    const now = this.deps.clock.now();
    for (const p of this.pending.values()) {
      if (p.expiresAt > now) continue;
      this.pending.delete(p.id);
      p.body.remove().catch(() => undefined);
    }
  }

  /** Spool files on disk now (tests: nothing is left behind). */
  spooled(): string[] {
    mkdirSync(this.spoolDir, { recursive: true });
    return readdirSync(this.spoolDir);
  }

  /** Removes every pending upload's file (the node stops). */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    const all = [...this.pending.values()];
    this.pending.clear();
    await Promise.all(all.map((p) => p.body.remove()));
  }
}
