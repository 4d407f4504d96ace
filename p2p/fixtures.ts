// Test fixtures for the p2p module's tests (not part of its public surface, never imported by index.ts).
import type { Identity } from "../core/index.ts";
import type { NodeRecord, Offer, SignedRecord } from "./types.ts";

/** A node's offer, as in a record. */
export const OFFER: Offer = {
  cpus: 4,
  memoryMb: 8192,
  gpus: 0,
  freeContainers: 10,
  maxCpusPerContainer: 2,
  maxMemoryMbPerContainer: 2048,
};

/** A record of `who` with the fields of `over`. */
export function recordOf(who: Identity, over: Partial<NodeRecord> = {}): NodeRecord {
  return {
    id: who.nodeId,
    name: "node-a",
    addresses: [{ host: "127.0.0.1", port: 9000 }],
    nat: false,
    reach: "direct",
    version: 1,
    metadata: "",
    offer: OFFER,
    issuedAt: 1_700_000_000_000,
    ...over,
  };
}

/** A record of `who`, signed by `who` (or by `signer`, for forgeries). */
export function signedRecord(
  who: Identity,
  over: Partial<NodeRecord> = {},
  signer: Identity = who,
): SignedRecord {
  const record = recordOf(who, over);
  return { record, signature: signer.signJson(record) };
}
