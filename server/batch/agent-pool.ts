// The task agents of a node's containers: per container, idle agents are reused, a busy container opens
// more up to a cap, and one waiting idle past a while is closed (on the node's clock). A container whose
// agent could not start (no /bin/sh, an engine without interactive exec) is remembered: its tasks are
// plain execs from then on (it is tried again after 10 minutes), as before agents.
import { type Clock, P2prcError } from "../../core/index.ts";
import type { ContainerEngine } from "../engine/index.ts";
import { TaskAgent } from "./agent.ts";

/** Agents open in one container at most (tasks beyond them are plain execs). */
export const MAX_AGENTS_PER_CONTAINER = 16;
/** An idle agent is closed after this long. */
export const AGENT_IDLE_MS = 30_000;
/** Why an agent could not open that says nothing of the container's next task (not remembered). */
const PASSING = new Set(["E_CONFLICT", "E_NOT_FOUND", "E_ENGINE_UNAVAILABLE"]);
/**
 * A container whose agent could not start is tried again after this long (its first agent may have met
 * it stopped, and it was started since).
 */
const NO_AGENT_RETRY_MS = 10 * 60_000;
/** Containers remembered as unable to run an agent; the oldest forgotten beyond it. */
const MAX_REMEMBERED = 4096;

/** How a node's tasks ran (`GET /v1/tasks/stats`). */
export interface TaskStats {
  /** Tasks answered through an agent (no engine call). */
  viaAgent: number;
  /** Tasks run as a plain exec (one engine exec each). */
  viaExec: number;
  /** Agents opened (one engine exec each). */
  agentsOpened: number;
  /** Agents open now. */
  agentsOpen: number;
  /** Containers whose agent could not start (their tasks are plain execs). */
  noAgent: number;
}

export interface AgentPoolDeps {
  engine: Pick<ContainerEngine, "openExec">;
  clock: Clock;
  maxPerContainer?: number | undefined;
  idleMs?: number | undefined;
}

interface ContainerAgents {
  idle: TaskAgent[];
  open: Set<TaskAgent>;
  /** Agents being opened (counted against the cap while their exec starts). */
  opening: number;
}

/** The agents of every container of the node. */
export class AgentPool {
  private readonly byContainer = new Map<string, ContainerAgents>();
  /** Containers whose agent could not start, and when (tried again after NO_AGENT_RETRY_MS). */
  private readonly unable = new Map<string, number>();
  readonly counts = { viaAgent: 0, viaExec: 0, agentsOpened: 0 };

  constructor(private readonly deps: AgentPoolDeps) {}

  /** An idle agent of the container, or a new one; undefined when it has none to give (a plain exec then). */
  async take(containerId: string): Promise<TaskAgent | undefined> {
    const since = this.unable.get(containerId);
    if (since !== undefined) {
      if (this.deps.clock.now() - since < NO_AGENT_RETRY_MS) return undefined;
      this.unable.delete(containerId);
    }
    let c = this.byContainer.get(containerId);
    for (;;) {
      const agent = c?.idle.pop();
      if (!agent) break;
      agent.idleCancel?.();
      agent.idleCancel = undefined;
      if (agent.usable()) return agent;
    }
    if (c && c.open.size + c.opening >= (this.deps.maxPerContainer ?? MAX_AGENTS_PER_CONTAINER))
      return undefined;
    if (!c) {
      c = { idle: [], open: new Set(), opening: 0 };
      this.byContainer.set(containerId, c);
    }
    const group = c;
    let agent: TaskAgent;
    group.opening++;
    try {
      agent = await TaskAgent.open(this.deps.engine, containerId, { clock: this.deps.clock });
    } catch (err) {
      // a container not running, gone, or an engine not answering: the plain exec that follows says so;
      // anything else (an engine without interactive exec) is remembered
      const passing = err instanceof P2prcError && PASSING.has(err.code);
      if (!passing) this.disable(containerId);
      return undefined;
    } finally {
      group.opening--;
    }
    this.counts.agentsOpened++;
    group.open.add(agent);
    agent.onGone = () => {
      group.open.delete(agent);
      const at = group.idle.indexOf(agent);
      if (at >= 0) group.idle.splice(at, 1);
      if (group.open.size === 0 && group.opening === 0 && this.byContainer.get(containerId) === group)
        this.byContainer.delete(containerId);
    };
    return agent;
  }

  /** Hands a task's agent back: idle until the next task, closed after the idle time. */
  give(containerId: string, agent: TaskAgent): void {
    const c = this.byContainer.get(containerId);
    if (!c || !agent.usable() || !c.open.has(agent)) {
      agent.close();
      return;
    }
    agent.idleCancel = this.deps.clock.setTimeout(() => agent.close(), this.deps.idleMs ?? AGENT_IDLE_MS);
    c.idle.push(agent);
  }

  /** The container cannot run an agent: its tasks are plain execs for a while, or until it is forgotten. */
  disable(containerId: string): void {
    this.unable.set(containerId, this.deps.clock.now());
    if (this.unable.size > MAX_REMEMBERED) {
      const oldest = this.unable.keys().next().value;
      if (oldest !== undefined) this.unable.delete(oldest);
    }
  }

  /** Closes a container's agents and forgets it (removed, stopped). */
  forget(containerId: string): void {
    this.unable.delete(containerId);
    const c = this.byContainer.get(containerId);
    this.byContainer.delete(containerId);
    for (const a of [...(c?.open ?? [])]) a.close();
  }

  /** Closes every agent (the node stops). */
  closeAll(): void {
    for (const id of [...this.byContainer.keys()]) this.forget(id);
  }

  stats(): TaskStats {
    let open = 0;
    for (const c of this.byContainer.values()) open += c.open.size;
    return { ...this.counts, agentsOpen: open, noAgent: this.unable.size };
  }
}
