// `p2prc batch status <out>`: what the store says about the batch written to a directory. Reads only.
import { resolve } from "node:path";
import { P2prcError } from "../../core/index.ts";
import type { ClientStore } from "../../store/index.ts";
import { type BatchSummary, summarize } from "./scheduler.ts";

/** A batch's state as the store has it: its id, when it began, and the counts of its tasks. */
export interface BatchStatus extends BatchSummary {
  batchId: string;
  outDir: string;
  createdAt: number;
  /** Other (older) batches written to the same directory by another job file. */
  older: number;
}

/** The newest batch written to `outDir`; E_NOT_FOUND when none was. */
export function batchStatus(tracking: ClientStore, outDir: string): BatchStatus {
  const dir = resolve(outDir);
  const [batch, ...older] = tracking.batchesByOutDir(dir);
  if (!batch)
    throw new P2prcError("E_NOT_FOUND", `no batch has written to ${dir}`, {
      hint: "give the --out of an earlier `p2prc batch` run, from the same home (--config-dir)",
    });
  return {
    batchId: batch.id,
    outDir: dir,
    createdAt: batch.createdAt,
    older: older.length,
    ...summarize(tracking.batchTasks(batch.id)),
  };
}
