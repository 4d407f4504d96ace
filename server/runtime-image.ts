// The node's runtime image for futures (Docs/Futures.md): p2prc's own executable (Bun itself when the node
// runs from source) and the glibc files it loads, imported once through the engine's image load (dockerode's
// `docker load`) as `p2prc-runtime:<hash>`. No registry, no base image, no shell: the node writes the
// archive itself from files it already runs. The hash names the executable (path, size, mtime) and the
// libraries, so a new p2prc version makes a new image and the same one is found again after a restart.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { arch, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type Logger, P2prcError, RUNTIME_BIN, RUNTIME_IMAGE, RUNTIME_KEEP_ALIVE } from "../core/index.ts";
import type { ContainerEngine } from "./engine/index.ts";
import { type StreamEntry, tarStream } from "./tar.ts";

/** The dynamic loader the executable names (its ELF interpreter), by architecture. */
const LOADERS: Record<string, string> = {
  x64: "/lib64/ld-linux-x86-64.so.2",
  arm64: "/lib/ld-linux-aarch64.so.1",
};
const DOCKER_ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64" };

export interface RuntimeImageOptions {
  engine: ContainerEngine;
  logger: Logger;
  /** The executable to copy (default: this process's, process.execPath). */
  executable?: string;
  /** Where the archive is written while it is loaded (default: the system's temp dir). */
  workDir?: string;
  /** Milliseconds since the epoch (default Date.now): an old image's age is judged by it. */
  now?: () => number;
}

/**
 * An older p2prc's runtime image is removed once it is this old and no container uses it: a node that
 * was upgraded does not leave a ~100 MB image per version behind, while two versions sharing one engine
 * (a test binary beside a source checkout) do not remove each other's fresh images.
 */
export const RUNTIME_IMAGE_KEEP_MS = 24 * 3600_000;

/** The shared libraries this process has mapped from the system's library directories (glibc and friends). */
export function mappedLibraries(maps = readFileSync("/proc/self/maps", "utf8")): string[] {
  const libs = new Set<string>();
  for (const line of maps.split("\n")) {
    const path = line.split(/\s+/)[5];
    if (path && /^\/(usr\/)?lib(64|32)?\//.test(path) && /\.so(\.|$)/.test(path)) libs.add(path);
  }
  return [...libs].sort();
}

/** Builds the runtime image on first use and hands its name to every later caller. */
export class RuntimeImage {
  private building: Promise<string> | undefined;

  constructor(private readonly o: RuntimeImageOptions) {}

  /** The image's name, `p2prc-runtime:<hash>`, loaded into the engine if it was not there. */
  ensure(): Promise<string> {
    this.building ??= this.build().then(
      (name) => {
        void this.pruneOld(name);
        return name;
      },
      (err) => {
        this.building = undefined;
        throw err;
      },
    );
    return this.building;
  }

  /** Removes runtime images other than `current` older than RUNTIME_IMAGE_KEEP_MS; one in use stays. */
  async pruneOld(current: string): Promise<string[]> {
    const log = this.o.logger.withTag("server:runtime");
    const removed: string[] = [];
    try {
      const cutoff = (this.o.now ?? Date.now)() - RUNTIME_IMAGE_KEEP_MS;
      for (const image of await this.o.engine.listImages()) {
        const tags = image.tags.filter((t) => t.startsWith(`${RUNTIME_IMAGE}:`) && t !== current);
        if (tags.length === 0 || image.tags.includes(current) || image.createdAt > cutoff) continue;
        for (const tag of tags) {
          try {
            await this.o.engine.removeImage(tag);
            removed.push(tag);
            log.info(`removed ${tag}, an older p2prc's runtime image`);
          } catch (err) {
            log.debug(`kept ${tag}: ${(err as Error).message}`);
          }
        }
      }
    } catch (err) {
      log.debug(`old runtime images not pruned: ${(err as Error).message}`);
    }
    return removed;
  }

  private async build(): Promise<string> {
    const exe = this.o.executable ?? process.execPath;
    const libs = mappedLibraries();
    const loader = LOADERS[arch()];
    const st = statSync(exe);
    const hash = createHash("sha256")
      .update(JSON.stringify([exe, st.size, st.mtimeMs, libs]))
      .digest("hex")
      .slice(0, 16);
    const name = `${RUNTIME_IMAGE}:${hash}`;
    if (await this.o.engine.inspectImage(name)) return name;
    const log = this.o.logger.withTag("server:runtime");
    log.info(`building ${name} from ${exe} and ${libs.length} libraries ...`);
    const dir = join(this.o.workDir ?? tmpdir(), `p2prc-runtime-${randomBytes(4).toString("hex")}`);
    mkdirSync(dir, { recursive: true });
    try {
      const layer = join(dir, "layer.tar");
      const files: StreamEntry[] = [
        { kind: "dir", path: "tmp", mode: 0o1777 },
        { kind: "dir", path: dirname(RUNTIME_BIN).slice(1), mode: 0o755 },
        { kind: "file", path: RUNTIME_BIN.slice(1), mode: 0o755, source: exe, size: st.size },
      ];
      const dirs = new Set<string>();
      const placed = new Set<string>();
      const place = (path: string, source: string) => {
        if (placed.has(path)) return;
        placed.add(path);
        const parts = path.split("/").slice(1, -1);
        for (let i = 1; i <= parts.length; i++) {
          const d = parts.slice(0, i).join("/");
          if (!dirs.has(d)) files.push({ kind: "dir", path: d, mode: 0o755 });
          dirs.add(d);
        }
        files.push({ kind: "file", path: path.slice(1), mode: 0o755, source, size: statSync(source).size });
      };
      for (const lib of libs) place(lib, lib);
      const loaderSource = libs.find((l) => l.endsWith(`/${loader?.split("/").pop()}`));
      if (loader && loaderSource) place(loader, loaderSource);
      // the layer is hashed as it is written: the image config names it by its digest
      const digest = createHash("sha256");
      const sink = Bun.file(layer).writer();
      for await (const chunk of tarStream(files)) {
        digest.update(chunk);
        sink.write(chunk);
      }
      await sink.end();
      const config = {
        created: new Date().toISOString(),
        architecture: DOCKER_ARCH[arch()] ?? arch(),
        os: "linux",
        config: {
          Env: [
            "BUN_BE_BUN=1",
            "PATH=/p2prc",
            "HOME=/tmp",
            "TMPDIR=/tmp",
            `LD_LIBRARY_PATH=${[...new Set(libs.map((l) => dirname(l)))].join(":")}`,
          ],
          Cmd: RUNTIME_KEEP_ALIVE,
          WorkingDir: "/tmp",
          Labels: { "p2prc.runtime": hash },
        },
        rootfs: { type: "layers", diff_ids: [`sha256:${digest.digest("hex")}`] },
        history: [{ created_by: `p2prc runtime image from ${exe}` }],
      };
      const manifest = [{ Config: "config.json", RepoTags: [name], Layers: ["layer/layer.tar"] }];
      await Bun.write(join(dir, "config.json"), JSON.stringify(config));
      await Bun.write(join(dir, "manifest.json"), JSON.stringify(manifest));
      const file = (path: string, source: string): StreamEntry => ({
        kind: "file",
        path,
        mode: 0o644,
        source,
        size: statSync(source).size,
      });
      const archive = tarStream([
        file("config.json", join(dir, "config.json")),
        { kind: "dir", path: "layer", mode: 0o755 },
        file("layer/layer.tar", layer),
        file("manifest.json", join(dir, "manifest.json")),
      ]);
      const loaded = await this.o.engine.loadImage(archive);
      if (!loaded.includes(name))
        throw new P2prcError(
          "E_ENGINE",
          `runtime image: the engine loaded ${loaded.join(", ")}, not ${name}`,
        );
      log.info(`built ${name}`);
      return name;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
