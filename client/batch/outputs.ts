// A task's outputs on the client side: carried in the task's reply (each tar checked against its hash and
// the node's signature), or fetched from the container after the task (too large for the reply, or a
// node of before outputs in the reply), written into the task's output directory as they arrive.
import { P2prcError, sha256Hex, taskReplyText, verifySignature } from "../../core/index.ts";
import type { NodeClient, TaskReply, TaskReplyOutput } from "../node-client.ts";
import { isMissingPath } from "./scheduler.ts";
import { extractTar } from "./untar.ts";

/**
 * An older node's refusal of a task's `outputs` field (its task schema is strict: `body: unknown field
 * "outputs"`, field `body.outputs`): the outputs are fetched after the task then.
 */
export function isOutputsRefused(err: unknown): boolean {
  return err instanceof P2prcError && err.code === "E_INVALID" && err.field === "body.outputs";
}

/**
 * A reply that carries outputs: each included tar must hash to what the reply lists, and the node's
 * signature (over stdout, stderr and those hashes) must be its own when the node is known by id.
 */
export function checkReply(r: TaskReply, containerId: string, nodeId: string | undefined): void {
  for (const o of r.outputs ?? []) {
    if (o.state === "included" && sha256Hex(Buffer.from(o.tar, "base64")) !== o.sha256)
      throw new P2prcError("E_FORBIDDEN", `output ${o.path}: its bytes do not match the reply's hash`, {
        field: "outputs",
      });
  }
  if (nodeId && r.signature && !verifySignature(nodeId, taskReplyText({ ...r, containerId }), r.signature))
    throw new P2prcError("E_FORBIDDEN", `the reply is not signed by node ${nodeId.slice(0, 12)} (refused)`, {
      field: "signature",
    });
}

/**
 * Writes one output into `outDir`: from the reply when it carries it, else fetched from the container
 * (too large for the reply, or an older node). False when the path is not there.
 */
export async function saveOutput(
  client: NodeClient,
  containerId: string,
  workingDir: string,
  out: string,
  carried: TaskReplyOutput | undefined,
  outDir: string,
): Promise<boolean> {
  if (carried?.state === "missing") return false;
  if (carried?.state === "included") {
    await extractTar(new Blob([Buffer.from(carried.tar, "base64")]).stream(), outDir);
    return true;
  }
  return fetchOutput(client, containerId, out.startsWith("/") ? out : `${workingDir}/${out}`, outDir);
}

/** Streams `path` out of the container into `outDir`; false when the node says the path is not there. */
async function fetchOutput(client: NodeClient, containerId: string, path: string, outDir: string) {
  let tar: ReadableStream<Uint8Array>;
  try {
    tar = await client.getFilesStream(containerId, path);
  } catch (err) {
    if (isMissingPath(err)) return false;
    throw err;
  }
  await extractTar(tar, outDir);
  return true;
}
