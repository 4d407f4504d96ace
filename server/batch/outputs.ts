// A task's declared outputs, sent back in the task's own reply: each as the tar the files route would
// stream, up to a cap on the reply's total; an output past the cap is named `tooLarge` and the caller
// fetches it as before. Through a task agent a regular file comes in the agent's answer (no engine call)
// and is wrapped here; otherwise each is read out of the container with one engine call.
import { createHash } from "node:crypto";
import { P2prcError } from "../../core/index.ts";
import type { ContainerEngine } from "../engine/index.ts";
import { ustarHeader } from "../tar.ts";
import type { OutputRecord } from "./agent-stream.ts";

/** Most tar bytes of all a task's outputs carried in its reply together. */
export const MAX_INLINE_OUTPUT_BYTES = 4 * 1024 * 1024;

/** One declared output as a task's reply carries it (`tar`: the archive in base64; `sha256`: of its bytes). */
export type TaskOutput =
  | { path: string; state: "included"; sha256: string; tar: string }
  | { path: string; state: "missing" }
  | { path: string; state: "tooLarge" };

/** Reads `stream` whole, or stops (and cancels it) once it holds more than `cap` bytes: undefined then. */
async function readCapped(stream: ReadableStream<Uint8Array>, cap: number): Promise<Uint8Array | undefined> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > cap) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size);
}

/** Where a declared output is in the container: a relative path is relative to the task's directory. */
export function outputPath(workingDir: string, path: string): string {
  return path.startsWith("/") ? path : `${workingDir}/${path}`;
}

/** The outputs of a task that ran in `workingDir` (a relative path is relative to it), in the order asked. */
export async function collectOutputs(
  engine: ContainerEngine,
  containerId: string,
  workingDir: string,
  paths: string[],
  cap = MAX_INLINE_OUTPUT_BYTES,
): Promise<TaskOutput[]> {
  const out: TaskOutput[] = [];
  let left = cap;
  for (const path of paths) {
    const full = outputPath(workingDir, path);
    let stream: ReadableStream<Uint8Array>;
    try {
      stream = await engine.getArchive(containerId, full);
    } catch (err) {
      if (err instanceof P2prcError && err.code === "E_NOT_FOUND" && err.field === "path") {
        out.push({ path, state: "missing" });
        continue;
      }
      throw err;
    }
    const tar = await readCapped(stream, left);
    if (!tar) {
      out.push({ path, state: "tooLarge" });
      continue;
    }
    left -= tar.byteLength;
    const sha256 = createHash("sha256").update(tar).digest("hex");
    out.push({ path, state: "included", sha256, tar: Buffer.from(tar).toString("base64") });
  }
  return out;
}

/** One regular file as the archive route gives it: a one-entry tar named by the file's base name. */
export function fileTar(name: string, data: Uint8Array): Uint8Array {
  const pad = (512 - (data.byteLength % 512)) % 512;
  const header = ustarHeader({ path: name, mode: 0o644, type: "0", size: data.byteLength });
  return Buffer.concat([header, data, Buffer.alloc(pad + 1024)]);
}

/** The last segment of an output's path (the name its tar entry has). */
export const baseName = (path: string) => path.split("/").filter(Boolean).pop() ?? "";

/**
 * The outputs of a task that ran through an agent, from its records (in the order asked): a file's bytes
 * as the archive route's tar (too large when that tar passes what is left of the cap: the agent sends at
 * most the cap's bytes of a file), missing, or (`D`: a directory, a link, a file the agent could not
 * read) read through the engine with what the files left of the cap.
 */
export async function outputsFromRecords(
  engine: ContainerEngine,
  containerId: string,
  workingDir: string,
  paths: string[],
  records: OutputRecord[],
  cap = MAX_INLINE_OUTPUT_BYTES,
): Promise<TaskOutput[]> {
  const out: (TaskOutput | undefined)[] = [];
  const rest: string[] = [];
  let left = cap;
  records.forEach((r, i) => {
    const path = paths[i] as string;
    if (r.kind === "M") out.push({ path, state: "missing" });
    else if (r.kind !== "F") {
      out.push(undefined);
      rest.push(path);
    } else {
      const tar = fileTar(baseName(path), r.data);
      if (tar.byteLength > left) {
        out.push({ path, state: "tooLarge" });
        return;
      }
      left -= tar.byteLength;
      const sha256 = createHash("sha256").update(tar).digest("hex");
      out.push({ path, state: "included", sha256, tar: Buffer.from(tar).toString("base64") });
    }
  });
  const read =
    rest.length > 0 ? await collectOutputs(engine, containerId, workingDir, rest, Math.max(0, left)) : [];
  return out.map((o) => o ?? (read.shift() as TaskOutput));
}
