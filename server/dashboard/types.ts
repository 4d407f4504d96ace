import type { PeerView } from "../../p2p/index.ts";
import type { BatchTaskRow } from "../../store/index.ts";
import type { ContainerView } from "../types.ts";

/** This node as the overview shows it. */
export interface SelfView {
  id: string;
  name: string;
  version: string;
  /** Where it serves (the server's URL). */
  address: string;
  /** Direct, or through relays (their ids). */
  reach: "direct" | "relay";
  relays: string[];
  engine: { ok: boolean; detail: string };
  startedAt: number;
}

/** A batch of this node's client, with one row per task. */
export interface BatchView {
  id: string;
  outDir: string;
  createdAt: number;
  /** The job's image and command, from its job text. */
  image: string;
  command: string;
  tasks: BatchTaskRow[];
  /** The demo's assembled PNG, once the Mandelbrot batch is done and the image written. */
  imagePath?: string | undefined;
}

/** A cluster this node hosts or is in. */
export interface ClusterInfo {
  name: string;
  host: string;
  version: number;
  hosting: boolean;
  members: { id: string; label: string; role: string }[];
}

/**
 * What the dashboard reads and does, wired by the composition root (abstractions/ui.ts) from the node's
 * parts. Every action runs as the node's operator: only the operator's session gets here.
 */
export interface DashboardSource {
  self(): Promise<SelfView>;
  /** The IP table (`--ls --json`), this node included. */
  peers(): PeerView[];
  /** Every container on this node. */
  containers(): Promise<ContainerView[]>;
  /** A container's output, followed, from its last `tail` lines. */
  logs(id: string, tail: number, signal: AbortSignal): Promise<ReadableStream<Uint8Array>>;
  removeContainer(id: string): Promise<void>;
  renewLease(id: string, ttlSeconds: number): Promise<ContainerView>;
  /** The client's batches, newest first. */
  batches(): BatchView[];
  clusters(): ClusterInfo[];
  addMember(cluster: string, id: string, role: "member" | "admin", label: string): void;
  removeMember(cluster: string, id: string): void;
}
